"""The winner on the held-out test split, scored once at the study's end."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import engine

from .._errors import HPOError
from ..spec import StudySpec
from ..storage import Storage, TrialRow
from ._models import saved_model
from ._studies import best_trials, objective_value
from ._training import load_data, train_network

__all__ = ["TestResult", "evaluate_on_test"]


@dataclass(frozen=True)
class TestResult:
    """The winner's score on the held-out test split, as a study records it at its end.

    Attributes:
        trial_number: The trial scored (the best one).
        params: Its parameters.
        test_acc: Its accuracy on the test split (None: no test split, or it diverged).
        test_size: Rows of the test split.
        val_value: Its stored validation score.
        source: ``"model"``: the trial's saved final network was scored, with no retraining;
            ``"retrained"``: it had none (a study made before hpo kept models, or its store
            failed), so it was retrained from its seed (``note`` says why).
        reproduced_value: The validation score of the retraining (None when not retrained).
        reproduced: Whether the retraining reproduced the stored score exactly (invariant I3;
            ``hpo verify`` checks it on demand when the saved model was scored).
        note: Why the winner was retrained rather than its saved model scored.
        error: Why there is no score, when there is none.
    """

    __test__ = False  # not a pytest test class, despite its name

    trial_number: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    test_acc: float | None = None
    test_size: int = 0
    val_value: float | None = None
    source: str = "retrained"
    reproduced_value: float | None = None
    reproduced: bool = False
    note: str | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The JSON stored in ``hpo_studies.test_result`` (and shown by ``hpo best -f json``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> TestResult | None:
        """A stored result back (None: the study has none yet)."""
        if not data:
            return None
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def evaluate_on_test(storage: Storage, spec: StudySpec, study_id: int) -> None:
    """Score the best trial once on the held-out test split, with its saved final network.

    A winner without a saved model (a study made before hpo kept models, or its store failed
    or lost it) is retrained with its own seed instead, as before: the retraining must then
    reproduce the stored validation score exactly (invariant I3), and the result records
    whether it did and why it retrained.
    """
    if spec.synthetic is not None:
        note = "synthetic trials train no network: there is no test score"
        storage.set_test_result(study_id, TestResult(error=note).as_dict())
        return
    best = best_trials(storage, study_id, spec, 1)
    if not best:
        storage.set_test_result(study_id, TestResult(error="no finished trial to evaluate").as_dict())
        return
    trial = best[0]
    try:
        result = _score_saved_model(storage, spec, study_id, trial)
    except (HPOError, engine.EngineError) as exc:  # no model, store unreachable, artifact gone
        result = _retrain(spec, trial, f"no saved model to score: {exc}")
    except Exception as exc:
        result = TestResult(trial_number=trial.number, error=f"{type(exc).__name__}: {exc}")
    storage.set_test_result(study_id, result.as_dict())


def _score_saved_model(storage: Storage, spec: StudySpec, study_id: int, trial: TrialRow) -> TestResult:
    checkpoint = saved_model(storage.get_study_by_id(study_id), trial)
    train_spec = spec.trial_spec(trial.params, trial.stage, seed=trial.seed)
    data = load_data(train_spec.dataset, train_spec.training.dtype)
    rows = int(data.test.x.shape[0])
    net = checkpoint.build_network()
    return TestResult(
        trial_number=trial.number,
        params=trial.params,
        test_acc=net.accuracy(data.test.x, data.test.t) if rows else None,
        test_size=rows,
        val_value=trial.value,
        source="model",
    )


def _retrain(spec: StudySpec, trial: TrialRow, note: str) -> TestResult:
    try:
        train_spec = spec.trial_spec(trial.params, trial.stage, seed=trial.seed)
        run = train_network(train_spec)
        reproduced = objective_value(spec, run.result.history)
        return TestResult(
            trial_number=trial.number,
            params=trial.params,
            test_acc=run.test_accuracy(),
            test_size=int(run.data.test.x.shape[0]),
            val_value=trial.value,
            reproduced_value=reproduced,
            reproduced=reproduced == trial.value,
            note=note,
        )
    except Exception as exc:
        return TestResult(trial_number=trial.number, error=f"{type(exc).__name__}: {exc}")
