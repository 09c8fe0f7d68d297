"""``narrowing``: staged range narrowing ("Deep Learning from Scratch" ch. 6.5, step 3 automated)."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._base import Proposal, Space, register
from ._independent import IndependentStrategy
from ._split import split_trials

if TYPE_CHECKING:
    from optuna.samplers import BaseSampler

    from ..spec import StudySpec
    from ..storage import TrialRow

__all__ = ["Narrowing", "promoted_count", "promoted_trials"]

log = logging.getLogger("hpo.search")


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
        from ..samplers import sobol_points

        by_stage: dict[int, list[int]] = {}
        for n in numbers:
            by_stage.setdefault(_stage_of(spec, n), []).append(n)
        params: dict[int, dict[str, Any]] = {}
        for stage, ns in by_stage.items():  # each stage's sequence drawn once
            first = spec.first_number(stage)
            points = sobol_points(space, spec.seed, stage, [n - first for n in ns])
            params.update(zip(ns, points, strict=True))
        return [(n, params[n], spec.trial_seed(n)) for n in numbers]

    def promote(
        self, spec: StudySpec, stage: int, space: Space, previous: Sequence[TrialRow]
    ) -> list[TrialRow]:
        return promoted_trials(spec, stage, space, previous)

    def optuna_sampler(self, seed: int, **options: Any) -> BaseSampler:
        from ..samplers import NarrowingSampler

        keep = ("space", "stages", "rule", "hard_bounds")
        return NarrowingSampler(seed=seed, **{k: v for k, v in options.items() if k in keep})


def promoted_count(share: float, n: int) -> int:
    """``round(share * n)``, halves rounded up (``0.25`` of 10 trials is 3)."""
    # round() first: 0.58 * 25 is 14.499999999999998 in binary and must give 15, as 14.5 does.
    return math.floor(round(share * n, 9) + 0.5)


def promoted_trials(
    spec: StudySpec, stage: int, space: Space, previous: Sequence[TrialRow]
) -> list[TrialRow]:
    """The trials of stage ``stage - 1`` that stage ``stage`` continues (``search.narrowing.promote``,
    stated in docs/narrowing.md), best first.

    When stage ``stage`` trains more epochs than stage ``stage - 1``: its ``m = min(round(promote *
    n), n_top, complete)`` best COMPLETE trials (equal values: the lower number first), where ``n``
    is stage ``stage``'s trial count and ``n_top`` the size of the top set its ranges narrowed
    around. They are in that top set, so their values lie inside ``space``, the narrowed window
    (checked: a trial outside it is left out, as the Optuna view needs each trial's values inside
    its stage's ranges).
    """
    from ..storage import TrialState

    share = 0.0 if spec.search.narrowing is None else spec.search.narrowing.promote
    if stage < 1 or share <= 0 or spec.stage_epochs(stage) <= spec.stage_epochs(stage - 1):
        return []
    sign = -1.0 if spec.objective.direction == "maximize" else 1.0
    ranked = sorted(
        (sign * t.value, t.number, t)
        for t in previous
        if t.stage == stage - 1
        and t.state == TrialState.COMPLETE
        and t.value is not None
        and not math.isnan(t.value)
    )
    n_top = spec.narrowing_rule().n_top(len(ranked), [key for key, _, _ in ranked])
    m = min(promoted_count(share, spec.search.stages[stage].trials), n_top, len(ranked))
    parents = [t for _, _, t in ranked[:m]]
    inside = [t for t in parents if _inside(space, t.params)]
    if len(inside) < len(parents):  # the rule's guarantee says never; the view would reject them
        outside = [t.number for t in parents if t not in inside]
        log.warning("stage %s: trials %s lie outside its ranges and are not continued", stage, outside)
    return inside


def _inside(space: Space, params: Mapping[str, Any]) -> bool:
    """Whether every value of ``params`` lies inside its distribution in ``space``."""
    for name, dist in space.items():
        if name not in params:
            return False
        try:
            if not dist._contains(dist.to_internal_repr(params[name])):
                return False
        except (ValueError, TypeError):
            return False
    return True
