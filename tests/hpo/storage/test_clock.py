"""Every time hpo writes or compares comes from the database's clock, not the calling host's.

The in-process tests bracket each written time between two readings of the database's own clock
(its native SQL, not hpo's expression). The skewed-client tests run the calls in a process whose
wall clock is an hour off (libfaketime), as a worker on another host would be: on PostgreSQL
nothing it writes or judges may depend on that. (A SQLite file is shared by the processes of one
host, whose clock is the database's: there is no other clock to disagree with.)
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

from hpo.storage import Storage, StudyRow, TrialOutcome, TrialState
from tests.faketime import skewed_env

from . import helpers

MakeStudy = Callable[..., StudyRow]
T = TypeVar("T")
SQLITE_DATETIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$")  # SQLAlchemy's storage format


def _db_clock(storage: Storage) -> datetime:
    """The database's clock, read with the backend's own SQL."""
    with storage.engine.connect() as conn:
        if storage.is_sqlite:
            text = conn.exec_driver_sql("select strftime('%Y-%m-%d %H:%M:%f', 'now')").scalar_one()
            return datetime.fromisoformat(text).replace(tzinfo=UTC)
        moment: datetime = conn.exec_driver_sql("select clock_timestamp()").scalar_one()
        return moment.astimezone(UTC)


def _timed(storage: Storage, call: Callable[[], T]) -> tuple[datetime, T, datetime]:
    """``(database time before, call(), database time after)``."""
    before = _db_clock(storage)
    result = call()
    return before, result, _db_clock(storage)


def _wait_past(storage: Storage, moment: datetime) -> None:
    """Until the database's clock is past ``moment`` (milliseconds at most)."""
    while _db_clock(storage) <= moment:
        time.sleep(0.001)


def test_claim_heartbeat_and_finish_times_are_the_database_clock(
    storage: Storage, make_study: MakeStudy
) -> None:
    study = make_study(2)
    first, second = storage.trials(study.id)
    assert study.created_at.tzinfo == UTC and first.created_at.tzinfo == UTC

    before, claimed, after = _timed(storage, lambda: helpers.claim(storage, first.id, "w", 6.5))
    assert claimed is not None and claimed.started_at is not None and claimed.lease_expires_at is not None
    assert claimed.started_at.tzinfo == UTC and claimed.lease_expires_at.tzinfo == UTC
    assert before <= claimed.started_at <= after
    assert claimed.lease_expires_at - claimed.started_at == timedelta(seconds=6.5)
    assert helpers.trial(storage, first.id) == claimed  # stored as returned

    minute = timedelta(seconds=60)
    before, alive, after = _timed(storage, lambda: storage.heartbeat(first.id, "w", 60, attempt=1))
    lease = helpers.trial(storage, first.id).lease_expires_at  # type: ignore[union-attr]
    assert alive and lease is not None and before + minute <= lease <= after + minute

    before, progress, after = _timed(
        storage, lambda: storage.finish(first.id, "w", TrialOutcome(TrialState.COMPLETE, 0.5), attempt=1)
    )
    done = helpers.trial(storage, first.id)
    assert progress is not None and done is not None and done.finished_at is not None
    assert before <= done.finished_at <= after and done.lease_expires_at is None

    before, local, after = _timed(storage, lambda: storage.claim_next(study.id, "w", 30))
    assert local is not None and local.id == second.id and local.started_at is not None
    assert before <= local.started_at <= after
    assert local.lease_expires_at == local.started_at + timedelta(seconds=30)


def test_requeue_expired_compares_leases_with_the_database_clock(
    storage: Storage, make_study: MakeStudy
) -> None:
    study = make_study(3)
    live, expired, _ = storage.trials(study.id)
    held = helpers.claim(storage, live.id, "w", 3600)
    short = helpers.claim(storage, expired.id, "w", 0.001)
    assert held is not None and held.lease_expires_at is not None
    assert short is not None and short.lease_expires_at is not None
    _wait_past(storage, short.lease_expires_at)
    assert storage.requeue_expired(study_id=study.id) == [expired.id]
    # A time given by the caller is compared exactly with the database's values (on SQLite as
    # fixed-width text: both sides must have the same format to the microsecond).
    lease = held.lease_expires_at
    assert storage.requeue_expired(now=lease - timedelta(microseconds=1), study_id=study.id) == []
    assert storage.requeue_expired(now=lease, study_id=study.id) == []
    assert storage.requeue_expired(now=lease + timedelta(microseconds=1), study_id=study.id) == [live.id]
    assert storage.counts(study.id)[TrialState.PENDING] == 3


def test_undelivered_cutoff_is_the_database_clock(storage: Storage, make_study: MakeStudy) -> None:
    study = make_study(3)
    ids = [t.id for t in storage.trials(study.id)]
    assert storage.mark_enqueued(ids[:2]) == 2
    assert [t.id for t in storage.undelivered(3600, study_id=study.id)] == ids[2:]
    enqueued = _db_clock(storage)
    _wait_past(storage, enqueued)
    assert [t.id for t in storage.undelivered(0, study_id=study.id)] == ids


def test_sqlite_stores_sqlalchemy_fixed_width_text(sqlite_url: str) -> None:
    from .conftest import draft

    storage = Storage(sqlite_url)
    storage.upgrade()
    study, _ = storage.create_study("s", "{}", "h", "maximize", draft(0, 2, 0))
    first, second = storage.trials(study.id)
    helpers.claim(storage, first.id, "w", 5)
    storage.mark_enqueued([second.id])
    storage.finish(first.id, "w", TrialOutcome(TrialState.COMPLETE, 1.0))
    columns = "created_at, started_at, finished_at, enqueued_at"
    with storage.engine.connect() as conn:
        rows = conn.exec_driver_sql(f"select {columns} from hpo_trials").all()
        rows += conn.exec_driver_sql("select created_at, updated_at from hpo_studies").all()
    values = [v for row in rows for v in row if v is not None]
    assert len(values) == 2 + 1 + 1 + 1 + 2  # created x2, started, finished, enqueued; the study's two
    assert all(isinstance(v, str) and SQLITE_DATETIME.match(v) for v in values), values


# -- a client whose clock is an hour off (PostgreSQL) ------------------------------------------

SKEWED_CLIENT = """
import json, sys, time
from hpo.storage import Storage, TrialOutcome
storage = Storage(sys.argv[1])
study, live, never, mine = (int(a) for a in sys.argv[2:])
out = {"clock": time.time()}
out["moved"] = storage.requeue_expired(study_id=study)
out["undelivered"] = [t.id for t in storage.undelivered(10, study_id=study)]
claimed, _ = storage.claim_with_study(mine, "skewed", 6)
out["lease"] = (claimed.lease_expires_at - claimed.started_at).total_seconds()
out["alive"] = storage.heartbeat(mine, "skewed", 60, attempt=claimed.attempts)
out["enqueued"] = storage.mark_enqueued([never])
out["finished"] = storage.finish(live, "parent", TrialOutcome("COMPLETE", 1.0), attempt=1) is not None
print(json.dumps(out))
"""


def _run_skewed(storage: Storage, skew: str, *args: int) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", SKEWED_CLIENT, storage.url, *map(str, args)],
        env={**os.environ, **skewed_env(skew)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


@pytest.mark.parametrize("storage", ["postgresql"], indirect=True)
@pytest.mark.parametrize("skew", ["+1h", "-1h"])
def test_a_client_an_hour_off_writes_and_judges_by_the_database_clock(
    storage: Storage, make_study: MakeStudy, skew: str
) -> None:
    study = make_study(5)
    live, expired, fresh, never, mine = (t.id for t in storage.trials(study.id))
    assert helpers.claim(storage, live, "parent", 3600) is not None
    short = helpers.claim(storage, expired, "parent", 0.001)
    assert short is not None and short.lease_expires_at is not None
    storage.mark_enqueued([fresh])
    _wait_past(storage, short.lease_expires_at)

    before, out, after = _timed(storage, lambda: _run_skewed(storage, skew, study.id, live, never, mine))
    offset = out["clock"] - time.time()
    assert abs(offset - (3600 if skew == "+1h" else -3600)) < 60, offset  # the skew was real
    # It judged the parent's leases and enqueue times by the database's clock ...
    assert out["moved"] == [expired]
    assert out["undelivered"] == [expired, never, mine]
    assert out["lease"] == 6 and out["alive"] and out["enqueued"] == 1 and out["finished"]
    # ... and wrote its own with it, as the parent sees them.
    claimed, done = helpers.trial(storage, mine), helpers.trial(storage, live)
    assert claimed is not None and claimed.started_at is not None and claimed.lease_expires_at is not None
    assert before <= claimed.started_at <= after
    minute = timedelta(seconds=60)
    assert before + minute <= claimed.lease_expires_at <= after + minute
    assert done is not None and done.finished_at is not None and before <= done.finished_at <= after
    assert storage.requeue_expired(study_id=study.id) == []
    assert [t.id for t in storage.undelivered(10, study_id=study.id)] == [expired]
