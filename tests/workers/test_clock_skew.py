"""Two workers whose clocks disagree by 30 s: leases must come from the database's clock.

One `hpo worker` runs under libfaketime, 30 s ahead of the other (and of PostgreSQL). If a lease
were written with one host's clock and judged with another's, the fast host's reaper would take
every other worker's running trial (their leases look 30 s expired), and its own leases would look
valid 30 s too long (issue 9).
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from pathlib import Path

import pytest

from hpo.storage import Storage
from tests.faketime import skewed_env
from tests.invariants import check_study

from .conftest import Worker, Workers, write_study
from .test_faults import submit, wait_finished

pytestmark = pytest.mark.services

SKEW = 30.0
LEASE = "6"
# A line a pool process logged: "[2025-01-31 12:00:00,123: INFO/ForkPoolWorker-1] ...".
POOL_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}): \w+/ForkPoolWorker-\d+\]", re.M)


def _pool_clocks(worker: Worker) -> list[float]:
    """The times (epoch seconds, by their own clocks) at which ``worker``'s pool processes logged."""
    return [
        datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").timestamp() + int(ms) / 1000
        for stamp, ms in POOL_LINE.findall(worker.text())
    ]


def test_a_worker_30s_ahead_steals_nothing(
    tmp_path: Path, workers: Workers, storage: Storage, study_name: str
) -> None:
    skewed_clock = skewed_env(f"+{SKEW:g}s")
    started = time.time()
    (normal,) = workers.start(1, HPO_LEASE_SECONDS=LEASE)
    (ahead,) = workers.start(1, HPO_LEASE_SECONDS=LEASE, **skewed_clock)
    # Trials of ~1 s on 4 pool processes: the fast reaper (every second) sees the other
    # worker's trials running.
    path = write_study(tmp_path / "s.yaml", study_name, t0=24, t1=8, e0=50, epochs=50, batch_size=1)
    submit(path, workers)
    wait_finished(storage, study_name, workers, timeout=90)

    # The skew was real in the processes that ran trials, and absent in the other worker's: every
    # line was logged after `started`; some of the skewed worker's are stamped in the future.
    now, skewed, plain = time.time(), _pool_clocks(ahead), _pool_clocks(normal)
    window = (started, now)
    assert skewed and min(skewed) > started + SKEW - 1 and max(skewed) > now + SKEW / 2, (window, skewed)
    assert plain and started - 1 < min(plain) and max(plain) < now + 1, (window, plain)

    study = storage.get_study(study_name)
    trials = storage.trials(study.id)
    at_cap = [t.number for t in trials if t.state == "FAIL"]
    twice = [t.number for t in trials if t.attempts > 1]
    assert (at_cap, twice) == ([], []), f"{len(at_cap)} failed at the cap, {len(twice)} ran more than once"
    facts = check_study(storage, study_name)
    assert len(facts["trials"]) == 32
    # both workers ran trials
    hosts = {t.worker.split(":")[1] for t in facts["trials"]}
    assert {str(p) for p in normal.pool()} & hosts and {str(p) for p in ahead.pool()} & hosts
