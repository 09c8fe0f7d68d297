"""Strategies that propose from the finished trials: Optuna's model-based samplers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ._base import Proposal, SearchStrategy, Space

if TYPE_CHECKING:
    import optuna

    from ..spec import StudySpec
    from ..storage import TrialRow

__all__ = ["SequentialStrategy"]


class SequentialStrategy(SearchStrategy):
    """Proposals through an in-memory Optuna study rebuilt from hpo's trials.

    hpo's database stays the only truth: the history is read from it, and the proposal is
    reproducible from it (each trial's sampler is seeded by the trial's seed).
    """

    sequential = True

    def propose(
        self, spec: StudySpec, space: Space, numbers: Sequence[int], history: Sequence[TrialRow]
    ) -> list[Proposal]:
        study = _history_study(spec, space, history)
        proposals = []
        for number in numbers:
            seed = spec.trial_seed(number)
            study.sampler = self.optuna_sampler(seed)
            # The asked trial stays in flight, so that the next proposal of this batch avoids it.
            proposals.append((number, dict(study.ask(dict(space)).params), seed))
        return proposals


def _history_study(spec: StudySpec, space: Space, history: Sequence[TrialRow]) -> optuna.Study:
    import optuna

    from ..storage import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=spec.objective.direction)
    for row in sorted(history, key=lambda r: r.number):
        if set(row.params) != set(space):
            continue
        dists = {k: space[k] for k in row.params}
        if not all(dists[k]._contains(dists[k].to_internal_repr(v)) for k, v in row.params.items()):
            continue  # a value outside the current space cannot be told to the sampler
        if row.state == TrialState.COMPLETE and row.value is not None:
            state, value = optuna.trial.TrialState.COMPLETE, row.value
        elif row.state in (TrialState.PENDING, TrialState.RUNNING):
            state, value = optuna.trial.TrialState.RUNNING, None
        else:
            continue
        study.add_trial(
            optuna.trial.create_trial(state=state, value=value, params=row.params, distributions=dists)
        )
    return study
