"""``NarrowingSampler``: staged range narrowing as an Optuna sampler, for any plain Optuna script."""

from __future__ import annotations

import bisect
import itertools
import threading
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from ._errors import NarrowingError
from ._narrowing import HardBounds, NarrowingRule, ParamNarrowing, check_hard_bounds, explain_narrowing
from ._sampling import name_rng, sample_params, sample_value, trial_rng
from ._space import Space, check_space

__all__ = ["NarrowingSampler"]

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


class NarrowingSampler(BaseSampler):
    """Random search in stages; each stage samples the ranges narrowed from the previous one.

    Trial ``k`` belongs to the stage whose cumulative range of trial numbers holds ``k``; trials
    beyond the last stage stay in the last stage's space. Stage 0 samples the distributions the
    objective asks for (or ``space``, if given). The space of stage ``s > 0`` is
    :func:`~hpo.samplers.narrow_space` over the COMPLETE trials of stage ``s - 1``, with the study's
    direction; it is cached once every trial of stage ``s - 1`` is finished.

    The parameters of trial ``k`` are ``sample_params(stage_space, trial_rng(seed, k))``, the same
    draw the hpo service makes, so the same seed reproduces the same parameters and parallel workers
    never draw the same ones. A parameter the stage space does not hold (stage 0 without ``space``,
    or a conditional parameter first seen later) is drawn from the distribution the objective asks
    for, with a generator keyed by ``(seed, k, name)`` so the order of ``suggest_*`` calls does not
    matter.

    Parallel optimization: if a stage-``s`` trial starts before every trial of stage ``s - 1`` has
    finished, the space is narrowed from the trials finished so far and not cached; such a trial's
    parameters then depend on timing and a rerun may differ.

    Bounds: a value returned to Optuna must lie inside the distribution the objective asks for, so
    that distribution is also a hard bound of the narrowing. To let a window pan past its starting
    range, declare the outer limit in ``suggest_*`` and pass the starting range as ``space``.

    Args:
        space: The stage-0 space. ``None`` means the distributions the objective asks for.
        stages: Number of trials of each stage, or a total number of trials, split into stages as a
            study file's ``search.trials`` is (:func:`hpo.search.split_trials`: 100 is four stages
            of 25, the default).
        rule: The narrowing rule; ``NarrowingRule()`` if omitted.
        seed: Study seed; ``None`` draws one from the operating system (not reproducible).
        hard_bounds: Per-parameter ``(low, high)`` value limits that no window ever crosses.
    """

    def __init__(
        self,
        space: Mapping[str, BaseDistribution] | None = None,
        stages: Sequence[int] | int = 100,
        rule: NarrowingRule | None = None,
        seed: int | None = 0,
        hard_bounds: HardBounds | None = None,
    ) -> None:
        if isinstance(stages, int) and not isinstance(stages, bool) and stages >= 1:
            from ..search import split_trials

            stages = split_trials(stages)
        stages = tuple(stages) if not isinstance(stages, int) else (stages,)
        if not stages or any(not isinstance(n, int) or isinstance(n, bool) or n < 1 for n in stages):
            raise NarrowingError(f"stages must be a non-empty list of positive trial counts, got {stages!r}")
        if rule is not None and not isinstance(rule, NarrowingRule):
            raise NarrowingError(f"rule must be a NarrowingRule, got {type(rule).__name__}")
        if seed is None:
            entropy = np.random.SeedSequence().entropy
            assert isinstance(entropy, int)
            seed = entropy % 2**63
        elif not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise NarrowingError(f"seed must be an integer >= 0 or None, got {seed!r}")
        self._space = None if space is None else check_space(space)
        self._stages = stages
        self._ends = list(itertools.accumulate(stages))
        self._rule = NarrowingRule() if rule is None else rule
        self._seed = seed
        self._hard_bounds = check_hard_bounds(hard_bounds)
        self._lock = threading.RLock()
        # Final stage spaces and records per (study, stage); they never change once cached.
        self._spaces: dict[tuple[Any, int], Space] = {}
        self._records: dict[tuple[Any, int], dict[str, ParamNarrowing]] = {}
        # Parameters drawn for running trials, so that a trial never mixes two provisional spaces.
        self._params: dict[tuple[Any, int], dict[str, Any]] = {}

    @property
    def seed(self) -> int:
        """The study seed."""
        return self._seed

    @property
    def stages(self) -> tuple[int, ...]:
        """Number of trials of each stage."""
        return self._stages

    @property
    def rule(self) -> NarrowingRule:
        """The narrowing rule."""
        return self._rule

    def stage_of(self, number: int) -> int:
        """The stage of trial ``number`` (trials past the last stage stay in the last stage)."""
        return min(bisect.bisect_right(self._ends, number), len(self._stages) - 1)

    def stage_space(self, study: Study, stage: int) -> Space:
        """The space stage ``stage`` samples from (provisional if the previous stage is unfinished)."""
        return self._stage(study, stage)[0]

    def explain_stage(self, study: Study, stage: int) -> dict[str, ParamNarrowing]:
        """Why stage ``stage`` (>= 1) has its ranges: the records of :func:`explain_narrowing`."""
        if not 1 <= stage < len(self._stages):
            raise NarrowingError(f"stage must be in 1..{len(self._stages) - 1}, got {stage}")
        return self._stage(study, stage)[1]

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        # Every parameter is drawn in sample_independent; joint draws come from the per-trial cache.
        return {}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return {}

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        self._raise_error_if_multi_objective(study)
        key = (_study_key(study), trial.number)
        with self._lock:
            params = self._params.get(key)
            if params is None:
                stage = self.stage_of(trial.number)
                if stage == 0 and self._space is None:
                    # The space is whatever the objective asks for: every parameter is drawn on its
                    # own below, so the draw is the same however far the stage has progressed.
                    params = {}
                else:
                    space = self._stage(study, stage)[0]
                    params = sample_params(space, trial_rng(self._seed, trial.number))
                self._params[key] = params
        if param_name in params:
            value = params[param_name]
            if _fits(value, param_distribution):
                return value
            warnings.warn(
                f"NarrowingSampler: {param_name}={value!r} from the stage space lies outside the "
                f"distribution the objective asks for ({param_distribution}); drawing from the latter",
                stacklevel=2,
            )
        return sample_value(param_distribution, name_rng(self._seed, trial.number, param_name))

    def after_trial(
        self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        with self._lock:
            self._params.pop((_study_key(study), trial.number), None)

    def reseed_rng(self) -> None:
        # Deliberately a no-op: Optuna reseeds each worker thread, but every draw here is a function
        # of (seed, trial number), which is already unique per trial; reseeding would break reruns.
        pass

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    def _stage_range(self, stage: int) -> range:
        return range(0 if stage == 0 else self._ends[stage - 1], self._ends[stage])

    def _stage(
        self, study: Study, stage: int, trials: list[FrozenTrial] | None = None
    ) -> tuple[Space, dict[str, ParamNarrowing], bool]:
        """``(space, records, final)`` of a stage; final results are cached.

        ``trials`` are the study's trials, fetched on first need (not at all once the stage is cached).
        """
        key = (_study_key(study), stage)
        with self._lock:
            if key in self._spaces:
                return self._spaces[key], self._records.get(key, {}), True
            if stage == 0 and self._space is not None:
                return self._space, {}, True
            if trials is None:
                trials = _all_trials(study)
            if stage == 0:
                in_stage = _in_range(trials, self._stage_range(0))
                space: Space = {}
                # Sorted names: the draw order must not depend on the order a storage returns params.
                for name, dist in sorted(_declared(in_stage).items()):
                    if not dist.single():
                        space[name] = dist
                final = _finished(in_stage, self._stage_range(0))
                if final:
                    self._spaces[key] = space
                return space, {}, final

            prev_space, _, prev_final = self._stage(study, stage - 1, trials)
            initial = self._stage(study, 0, trials)[0]
            in_prev = _in_range(trials, self._stage_range(stage - 1))
            complete = [
                (t.params, t.value) for t in in_prev if t.state == TrialState.COMPLETE and t.value is not None
            ]
            bounds = self._effective_bounds(_declared(in_prev), prev_space)
            records = explain_narrowing(
                prev_space,
                complete,
                study.direction,
                self._rule,
                initial_space=initial,
                hard_bounds=bounds,
                earlier=[self._stage(study, k, trials)[0] for k in range(stage - 1)],
            )
            space = {name: rec.new for name, rec in records.items()}
            final = prev_final and _finished(in_prev, self._stage_range(stage - 1))
            if final:
                self._spaces[key] = space
                self._records[key] = records
            return space, records, final

    def _effective_bounds(
        self, declared: dict[str, BaseDistribution], space: Space
    ) -> dict[str, tuple[float | None, float | None]]:
        """User hard bounds intersected with the ranges the objective declares."""
        bounds: dict[str, tuple[float | None, float | None]] = {}
        for name, dist in space.items():
            if isinstance(dist, CategoricalDistribution):
                continue
            low, high = self._hard_bounds.get(name, (None, None))
            asked = declared.get(name)
            if isinstance(asked, FloatDistribution | IntDistribution):
                low = asked.low if low is None else max(low, asked.low)
                high = asked.high if high is None else min(high, asked.high)
            if low is not None or high is not None:
                bounds[name] = (low, high)
        return bounds


def _study_key(study: Study) -> Any:
    # One sampler object may serve several studies; caches must not leak between them.
    return (study.study_name, getattr(study, "_study_id", None))


def _all_trials(study: Study) -> list[FrozenTrial]:
    # Under HyperbandPruner, Optuna hands samplers a per-bracket view of the study; stages are
    # defined on all trial numbers, so use the whole study when the view exposes it.
    base = getattr(study, "_study", study)
    if not isinstance(base, Study):
        base = study
    return base.get_trials(deepcopy=False)


def _in_range(trials: list[FrozenTrial], numbers: range) -> list[FrozenTrial]:
    return sorted((t for t in trials if t.number in numbers), key=lambda t: t.number)


def _finished(trials: list[FrozenTrial], numbers: range) -> bool:
    done = {t.number for t in trials if t.state in _FINISHED}
    return all(n in done for n in numbers)


def _declared(trials: list[FrozenTrial]) -> dict[str, BaseDistribution]:
    """The distribution each parameter was asked with; the latest trial wins if the objective changed."""
    out: dict[str, BaseDistribution] = {}
    for t in trials:
        out.update(t.distributions)
    return out


def _fits(value: Any, dist: BaseDistribution) -> bool:
    """Whether a drawn value may be returned to Optuna for ``dist``."""
    if isinstance(dist, CategoricalDistribution):
        return any(type(c) is type(value) and c == value for c in dist.choices)
    if isinstance(dist, IntDistribution) and not (isinstance(value, int) and not isinstance(value, bool)):
        return False
    if isinstance(dist, FloatDistribution) and not isinstance(value, float):
        return False
    try:
        return bool(dist._contains(dist.to_internal_repr(value)))
    except (ValueError, TypeError):
        return False
