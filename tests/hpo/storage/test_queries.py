"""Reads of :class:`~hpo.storage.Storage` (``hpo.storage._queries``): a study's compute."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from hpo.storage import Compute, Storage, StudyRow, TrialOutcome

from . import helpers
from .conftest import draft

MakeStudy = Callable[..., StudyRow]


def _finish(storage: Storage, trial_id: int, state: str, epochs: int, seconds: float) -> None:
    claimed = helpers.claim(storage, trial_id, "w", 60)
    assert claimed is not None
    outcome = TrialOutcome(
        state, 0.5, None if state != "FAIL" else "diverged", epochs_trained=epochs, train_seconds=seconds
    )
    assert storage.finish(trial_id, "w", outcome, attempt=claimed.attempts)


def test_compute_sums_per_stage_and_for_the_study_in_one_statement(
    storage: Storage, make_study: MakeStudy
) -> None:
    study = make_study(3)
    stage_0 = storage.trials(study.id, stage=0)
    _finish(storage, stage_0[0].id, "COMPLETE", 4, 1.25)
    _finish(storage, stage_0[1].id, "PRUNED", 2, 0.5)
    _finish(storage, stage_0[2].id, "FAIL", 1, 0.125)
    assert storage.advance(study.id, 0, draft(1, 3, 3))
    stage_1 = storage.trials(study.id, stage=1)
    _finish(storage, stage_1[0].id, "COMPLETE", 8, 2.0)
    # A trial failed by the attempt cap (its worker lost) records no compute; a running one neither.
    lost = helpers.claim(storage, stage_1[1].id, "w", 60)
    assert lost is not None
    assert storage.release(lost.id, "w", attempt=lost.attempts, worker_lost=True, max_attempts=1)
    assert helpers.claim(storage, stage_1[2].id, "w", 60) is not None

    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    sa.event.listen(storage.engine, "before_cursor_execute", record)
    try:
        compute = storage.compute(study.id)
    finally:
        sa.event.remove(storage.engine, "before_cursor_execute", record)
    assert len([s for s in statements if "hpo_trials" in s]) == 1  # one round trip
    assert compute.stages == {0: Compute(7, 1.875, 3), 1: Compute(8, 2.0, 1)}
    assert compute.total == Compute(15, 3.875, 4)
    assert [t.state for t in storage.trials(study.id, stage=1)] == ["COMPLETE", "FAIL", "RUNNING"]


def test_compute_of_a_study_without_any_is_zero(storage: Storage, make_study: MakeStudy) -> None:
    study = make_study(2)
    compute = storage.compute(study.id)
    assert compute.total == Compute(0, 0.0, 0) and compute.stages == {}
    assert compute.stage(0) == Compute() and isinstance(compute.total.seconds, float)
    _finish(storage, storage.trials(study.id)[0].id, "COMPLETE", 0, 0.0)  # failed before training
    assert storage.compute(study.id).stage(0) == Compute(0, 0.0, 1)


@pytest.mark.parametrize("seconds", [1e-6, 3600.5])
def test_compute_keeps_the_seconds_a_trial_recorded(
    storage: Storage, make_study: MakeStudy, seconds: float
) -> None:
    study = make_study(1)
    _finish(storage, storage.trials(study.id)[0].id, "COMPLETE", 3, seconds)
    assert storage.compute(study.id).total == Compute(3, seconds, 1)
    assert storage.trials(study.id)[0].train_seconds == seconds  # a double, not a single-precision float
