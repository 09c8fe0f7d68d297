"""Stopping trials early whose intermediate objective falls behind (Optuna's pruners)."""

from __future__ import annotations

import optuna

from ..spec import StudySpec
from ..storage import Storage, TrialRow, TrialState

__all__ = ["PruneCheck"]


def _pruner(spec: StudySpec) -> optuna.pruners.BasePruner | None:
    p = spec.pruner
    if p.kind == "none":
        return None
    if p.kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=p.warmup_epochs)
    if p.kind == "percentile":
        return optuna.pruners.PercentilePruner(
            p.percentile, n_startup_trials=5, n_warmup_steps=p.warmup_epochs
        )
    return optuna.pruners.HyperbandPruner(min_resource=max(1, p.warmup_epochs))


class PruneCheck:
    """Asks an Optuna pruner, after each evaluated epoch, whether to stop this trial.

    The pruner sees the finished trials of the same stage (same epoch budget) with their
    per-epoch objective values, read once when the trial starts.
    """

    def __init__(self, spec: StudySpec, storage: Storage, trial: TrialRow) -> None:
        self.pruner = _pruner(spec)
        self.study: optuna.Study | None = None
        self.trial_number = -1
        if self.pruner is None:
            return
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.study = optuna.create_study(direction=spec.objective.direction, pruner=self.pruner)
        peers = storage.trials(
            trial.study_id, states=(TrialState.COMPLETE, TrialState.PRUNED), stage=trial.stage
        )
        for row in peers:
            inter = {int(k): float(v) for k, v in (row.intermediate or {}).items()}
            if not inter:
                continue
            state = (
                optuna.trial.TrialState.COMPLETE
                if row.state == TrialState.COMPLETE
                else optuna.trial.TrialState.PRUNED
            )
            value = row.value if row.state == TrialState.COMPLETE else inter[max(inter)]
            if value is None:
                continue
            self.study.add_trial(
                optuna.trial.create_trial(state=state, value=value, intermediate_values=inter)
            )
        self.trial = self.study.ask()

    def should_prune(self, epoch: int, value: float) -> bool:
        if self.study is None:
            return False
        self.trial.report(value, epoch)
        return self.trial.should_prune()
