"""``narrowing``: staged range narrowing ("Deep Learning from Scratch" ch. 6.5, step 3 automated)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._base import Space, register
from ._independent import IndependentStrategy
from ._split import split_trials

if TYPE_CHECKING:
    from optuna.samplers import BaseSampler

    from ..spec import StudySpec

__all__ = ["Narrowing"]


@register
class Narrowing(IndependentStrategy):
    """Random samples in ranges narrowed after each stage around its top trials."""

    name = "narrowing"
    summary = "random samples in ranges narrowed after each stage around its top trials"
    narrows = True

    def split(self, trials: int) -> list[int]:
        return split_trials(trials)

    def next_space(
        self, spec: StudySpec, space: Space, finished: Sequence[tuple[Mapping[str, Any], float]]
    ) -> Space:
        from ..samplers import narrow_space

        return narrow_space(
            space,
            finished,
            spec.objective.direction,
            spec.narrowing_rule(),
            initial_space=spec.search_space(),
            hard_bounds=spec.hard_bounds(),
        )

    def optuna_sampler(self, seed: int, **options: Any) -> BaseSampler:
        from ..samplers import NarrowingSampler

        keep = ("space", "stages", "rule", "hard_bounds")
        return NarrowingSampler(seed=seed, **{k: v for k, v in options.items() if k in keep})
