"""The winner on the held-out test split, scored once at the study's end."""

from __future__ import annotations

from ..spec import StudySpec
from ..storage import Storage
from ._studies import best_trials, objective_value
from ._training import train_network

__all__ = ["evaluate_on_test"]


def evaluate_on_test(storage: Storage, spec: StudySpec, study_id: int) -> None:
    """Retrain the best trial with its own seed and score it once on the held-out test split.

    The retrained run must reproduce the stored validation score exactly (invariant I3); the
    result records whether it did.
    """
    best = best_trials(storage, study_id, spec, 1)
    if not best:
        storage.set_test_result(study_id, {"error": "no finished trial to evaluate"})
        return
    trial = best[0]
    try:
        train_spec = spec.trial_spec(trial.params, trial.stage, seed=trial.seed)
        run = train_network(train_spec)
        reproduced = objective_value(spec, run.result.history)
        result = {
            "trial_number": trial.number,
            "params": trial.params,
            "test_acc": run.test_accuracy(),
            "test_size": int(run.data.test.x.shape[0]),
            "val_value": trial.value,
            "reproduced_value": reproduced,
            "reproduced": reproduced == trial.value,
        }
    except Exception as exc:
        result = {"trial_number": trial.number, "error": f"{type(exc).__name__}: {exc}"}
    storage.set_test_result(study_id, result)
