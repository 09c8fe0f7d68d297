"""The row mapper reads every field of a row from its table's columns; a trial's outcome is checked
when it is made."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime
from typing import Any

import pytest

from hpo.storage import StageRow, StudyRow, TrialOutcome, TrialRow, TrialState
from hpo.storage._models import Stage, Study, Trial
from hpo.storage._rows import row_from


@pytest.mark.parametrize(("row", "model"), [(StudyRow, Study), (StageRow, Stage), (TrialRow, Trial)])
def test_every_row_field_is_a_column_of_its_table(row: type[Any], model: type[Any]) -> None:
    columns = {c.name for c in model.__table__.columns}
    assert {f.name for f in dataclasses.fields(row)} <= columns


def test_row_from_decodes_enum_and_json_columns_and_reads_prefixed_labels() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    columns = {
        "id": 7, "study_id": 1, "number": 3, "stage": 0, "params": '{"lr":0.1}', "seed": 9,
        "state": "COMPLETE", "attempts": 1, "worker": "w", "lease_expires_at": None, "value": 0.5,
        "reason": None, "curves": '[{"epoch":1}]', "intermediate": '{"2":0.5,"1":null}',
        "optuna_trial_id": None, "created_at": now, "started_at": now, "finished_at": now,
        "checkpoint": "c", "checkpoint_epoch": 5, "model": "m",
        "epochs_trained": 50, "train_seconds": 1.5, "parent_id": 4,
        "enqueued_at": now,  # a column the row has no field for: ignored
    }  # fmt: skip
    row = row_from(TrialRow, {f"t__{k}": v for k, v in columns.items()}, prefix="t__")
    assert row.state is TrialState.COMPLETE and row.params == {"lr": 0.1} and row.curves == [{"epoch": 1}]
    assert list(row.intermediate or {}) == [1, 2] and math.isnan((row.intermediate or {})[1])
    assert (row.id, row.number, row.worker, row.finished_at) == (7, 3, "w", now)
    assert (row.checkpoint, row.checkpoint_epoch, row.model) == ("c", 5, "m")
    assert (row.epochs_trained, row.train_seconds, row.parent_id) == (50, 1.5, 4)


def test_a_trial_outcome_is_checked_and_normalised_when_made() -> None:
    done = TrialOutcome("COMPLETE", 1)
    assert done.state is TrialState.COMPLETE and isinstance(done.value, float)
    assert TrialOutcome(TrialState.FAIL, 0.3, "diverged").value is None  # a failed trial has no value
    assert TrialOutcome("PRUNED", reason="median rule").value is None
    for state, value, reason in [("COMPLETE", None, None), ("COMPLETE", math.nan, None), ("FAIL", None, "")]:
        with pytest.raises(ValueError, match="needs"):
            TrialOutcome(state, value, reason)
    with pytest.raises(ValueError, match="final state"):
        TrialOutcome("RUNNING", 1.0)


def test_every_outcome_field_is_a_trial_column_and_is_written_encoded() -> None:
    # finish writes each outcome field to the column of its name: a new per-trial result is a field
    # and a column, and this test fails if one has no column.
    assert {f.name for f in dataclasses.fields(TrialOutcome)} <= {c.name for c in Trial.__table__.columns}
    written = TrialOutcome(
        "COMPLETE",
        0.5,
        curves=[{"epoch": 1}],
        intermediate={2: 0.5, 1: 0.25},
        model="m",
        epochs_trained=2,
        train_seconds=0.25,
    ).columns()
    assert written == {
        "state": "COMPLETE", "value": 0.5, "reason": None, "curves": '[{"epoch":1}]',
        "intermediate": '{"2":0.5,"1":0.25}', "model": "m",
        "epochs_trained": 2, "train_seconds": 0.25,
    }  # fmt: skip
    assert TrialOutcome.kept_when_none() == {"curves", "intermediate"}
    assert TrialOutcome("FAIL", reason="x").columns()["curves"] is None  # keeps the heartbeat's
