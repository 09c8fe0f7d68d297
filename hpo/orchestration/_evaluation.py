"""The winner on the held-out test split, scored once at the study's end."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..spec import StudySpec
from ..storage import Storage
from ._studies import best_trials, objective_value
from ._training import train_network

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
        reproduced_value: The validation score of the retraining.
        reproduced: Whether the retraining reproduced the stored score exactly (invariant I3).
        error: Why there is no score, when there is none.
    """

    __test__ = False  # not a pytest test class, despite its name

    trial_number: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    test_acc: float | None = None
    test_size: int = 0
    val_value: float | None = None
    reproduced_value: float | None = None
    reproduced: bool = False
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
    """Retrain the best trial with its own seed and score it once on the held-out test split.

    The retrained run must reproduce the stored validation score exactly (invariant I3); the
    result records whether it did.
    """
    best = best_trials(storage, study_id, spec, 1)
    if not best:
        storage.set_test_result(study_id, TestResult(error="no finished trial to evaluate").as_dict())
        return
    trial = best[0]
    try:
        train_spec = spec.trial_spec(trial.params, trial.stage, seed=trial.seed)
        run = train_network(train_spec)
        reproduced = objective_value(spec, run.result.history)
        result = TestResult(
            trial_number=trial.number,
            params=trial.params,
            test_acc=run.test_accuracy(),
            test_size=int(run.data.test.x.shape[0]),
            val_value=trial.value,
            reproduced_value=reproduced,
            reproduced=reproduced == trial.value,
        )
    except Exception as exc:
        result = TestResult(trial_number=trial.number, error=f"{type(exc).__name__}: {exc}")
    storage.set_test_result(study_id, result.as_dict())
