"""The service layer: submitting studies, running trials, moving studies on, and the executors.

The local executor (:func:`run_local`, the embedded default) and the Celery tasks (``workers/``)
are thin loops around these functions. The database is the only truth: a function here reads
what it needs from storage, does its work, and writes the result back with a compare-and-set, so
a second delivery of the same work, or two processes racing to move the same study on, change
nothing.

One module per concept:

- :mod:`._studies`: a study's spec, its submission, its best trials, how a trial is scored;
- :mod:`._proposals`: a stage's trials, as the study's search strategy proposes them;
- :mod:`._trial`: running one trial (with :mod:`._heartbeats`, :mod:`._pruning`,
  :mod:`._training`, the network itself, and :mod:`._checkpoints`, its checkpoints and model in
  the study's artifact store);
- :mod:`._advance`: the next stage, the end, a failure; the Optuna view;
- :mod:`._evaluation`: the winner on the held-out test split;
- :mod:`._models`: the networks a study kept (export, predictions, the retrain check);
- :mod:`._remote` and :mod:`._executor`: message-queue execution and the reaper;
- :mod:`._local`: local worker processes on one host.

Names are imported on first use: importing this package loads neither NumPy nor Optuna.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_getattr

if TYPE_CHECKING:
    from ._advance import MIRROR_INTERVAL, advance_study, mirror_optuna_view
    from ._evaluation import TestResult, evaluate_on_test
    from ._executor import BrokerError, Executor, check_database_shareable, load_executor
    from ._explain import StageExplanation, explain_stages
    from ._local import (
        LocalRunInterruptedError,
        Progress,
        default_workers,
        local_runner,
        run_local,
        runner_gone,
        shown_state,
    )
    from ._models import (
        ModelNotFoundError,
        Verification,
        model_file,
        pick_trial,
        predict_rows,
        read_features,
        saved_model,
        verify_winner,
    )
    from ._proposals import first_stage_draft, next_stage_draft
    from ._remote import dispatch_trials, execute_trial, reap
    from ._studies import (
        StudyDeleted,
        best_trials,
        check_artifact_store,
        delete_study,
        objective_value,
        study_spec,
        submit_study,
    )
    from ._training import (
        TrainedNetwork,
        build_network,
        build_trainer,
        check_study_data,
        format_bytes,
        load_data,
        memory_limit,
        train_memory,
        train_network,
    )
    from ._trial import LEASE_SECONDS, TrialReport, run_trial

_EXPORTS = {
    "MIRROR_INTERVAL": "._advance",
    "advance_study": "._advance",
    "mirror_optuna_view": "._advance",
    "TestResult": "._evaluation",
    "evaluate_on_test": "._evaluation",
    "StageExplanation": "._explain",
    "explain_stages": "._explain",
    "BrokerError": "._executor",
    "Executor": "._executor",
    "check_database_shareable": "._executor",
    "load_executor": "._executor",
    "LocalRunInterruptedError": "._local",
    "Progress": "._local",
    "default_workers": "._local",
    "local_runner": "._local",
    "run_local": "._local",
    "runner_gone": "._local",
    "shown_state": "._local",
    "ModelNotFoundError": "._models",
    "Verification": "._models",
    "model_file": "._models",
    "pick_trial": "._models",
    "predict_rows": "._models",
    "read_features": "._models",
    "saved_model": "._models",
    "verify_winner": "._models",
    "first_stage_draft": "._proposals",
    "next_stage_draft": "._proposals",
    "dispatch_trials": "._remote",
    "execute_trial": "._remote",
    "reap": "._remote",
    "best_trials": "._studies",
    "objective_value": "._studies",
    "study_spec": "._studies",
    "submit_study": "._studies",
    "check_artifact_store": "._studies",
    "delete_study": "._studies",
    "StudyDeleted": "._studies",
    "TrainedNetwork": "._training",
    "build_network": "._training",
    "build_trainer": "._training",
    "check_study_data": "._training",
    "format_bytes": "._training",
    "load_data": "._training",
    "memory_limit": "._training",
    "train_memory": "._training",
    "train_network": "._training",
    "LEASE_SECONDS": "._trial",
    "TrialReport": "._trial",
    "run_trial": "._trial",
}

__all__ = [
    "LEASE_SECONDS",
    "MIRROR_INTERVAL",
    "BrokerError",
    "Executor",
    "LocalRunInterruptedError",
    "ModelNotFoundError",
    "Progress",
    "StageExplanation",
    "StudyDeleted",
    "TestResult",
    "TrainedNetwork",
    "TrialReport",
    "Verification",
    "advance_study",
    "best_trials",
    "build_network",
    "build_trainer",
    "check_artifact_store",
    "check_database_shareable",
    "check_study_data",
    "default_workers",
    "delete_study",
    "dispatch_trials",
    "evaluate_on_test",
    "execute_trial",
    "explain_stages",
    "first_stage_draft",
    "format_bytes",
    "load_data",
    "load_executor",
    "local_runner",
    "memory_limit",
    "mirror_optuna_view",
    "model_file",
    "next_stage_draft",
    "objective_value",
    "pick_trial",
    "predict_rows",
    "read_features",
    "reap",
    "run_local",
    "run_trial",
    "runner_gone",
    "saved_model",
    "shown_state",
    "study_spec",
    "submit_study",
    "train_memory",
    "train_network",
    "verify_winner",
]


__getattr__ = lazy_getattr(__name__, _EXPORTS)
