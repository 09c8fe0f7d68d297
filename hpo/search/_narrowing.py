"""``narrowing``: staged range narrowing ("Deep Learning from Scratch" ch. 6.5, step 3 automated)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._base import Proposal, Space, register
from ._independent import IndependentStrategy
from ._split import split_trials

if TYPE_CHECKING:
    from optuna.samplers import BaseSampler

    from ..spec import StudySpec
    from ..storage import TrialRow

__all__ = ["Narrowing"]


def _stage_of(spec: StudySpec, number: int) -> int:
    """The stage that trial ``number`` belongs to (numbers run on across stages)."""
    end = 0
    for index, stage in enumerate(spec.search.stages):
        end += stage.trials
        if number < end:
            return index
    raise ValueError(f"trial {number} is past the study's {end} trials")


@register
class Narrowing(IndependentStrategy):
    """Random samples in ranges narrowed after each stage around its top trials."""

    name = "narrowing"
    summary = "random samples in ranges narrowed after each stage around its top trials"
    narrows = True

    def split(self, trials: int) -> list[int]:
        return split_trials(trials)

    def next_space(
        self,
        spec: StudySpec,
        space: Space,
        finished: Sequence[tuple[Mapping[str, Any], float]],
        earlier: Sequence[Space] = (),
    ) -> Space:
        from ..samplers import narrow_space

        return narrow_space(
            space,
            finished,
            spec.objective.direction,
            spec.narrowing_rule(),
            initial_space=spec.search_space(),
            hard_bounds=spec.hard_bounds(),
            earlier=earlier,
        )

    def propose(
        self, spec: StudySpec, space: Space, numbers: Sequence[int], history: Sequence[TrialRow]
    ) -> list[Proposal]:
        """Independent draws (as every independent strategy), or with ``sampling: sobol`` each
        trial's point of its stage's Sobol sequence, by its position in the stage."""
        narrowing = spec.search.narrowing
        if narrowing is None or narrowing.sampling == "random":
            return super().propose(spec, space, numbers, history)
        from ..samplers import sobol_params

        out: list[Proposal] = []
        for n in numbers:
            stage = _stage_of(spec, n)
            index = n - spec.first_number(stage)
            out.append((n, sobol_params(space, spec.seed, stage, index), spec.trial_seed(n)))
        return out

    def optuna_sampler(self, seed: int, **options: Any) -> BaseSampler:
        from ..samplers import NarrowingSampler

        keep = ("space", "stages", "rule", "hard_bounds")
        return NarrowingSampler(seed=seed, **{k: v for k, v in options.items() if k in keep})
