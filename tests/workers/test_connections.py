"""Database connections of workers: one per pool process, and what each trial cost, logged."""

from __future__ import annotations

import re
from pathlib import Path

from hpo.storage import Storage
from tests.workers.conftest import ConnectionPeaks, Workers, hpo, wait_for, write_synthetic_study


def test_pool_processes_connect_when_they_start_not_in_their_first_claim(workers: Workers) -> None:
    """Opening a connection is ~125 ms (~235 ms with 32 processes starting together), a claim
    ~1 ms: a pool process opens its own before it takes a message, so no trial's claim pays."""
    import sqlalchemy as sa

    (w,) = workers.start(1, concurrency=4)
    workers.wait_ready(w, concurrency=4)
    engine = sa.create_engine(workers.db, poolclass=sa.pool.NullPool)
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE application_name = 'hpo-worker' AND datname = current_database()"
    )
    try:

        def connected() -> bool:
            with engine.connect() as conn:
                return int(conn.execute(query).scalar_one()) >= 4

        # No trial was sent: the four pool processes' own connections (and the main process's).
        wait_for(connected, 15, "a connection of each pool process")
    finally:
        engine.dispose()


def test_each_pool_process_holds_at_most_one_connection(
    tmp_path: Path, workers: Workers, storage: Storage, study_name: str
) -> None:
    (w,) = workers.start(1, concurrency=6)
    workers.wait_ready(w, concurrency=6)
    path = tmp_path / "s.yaml"
    write_synthetic_study(path, study_name, t0=24, t1=16)
    args = ["submit", str(path), "--broker", workers.broker, "--db", workers.db, "--no-progress", "--wait"]
    with ConnectionPeaks(workers.db, "application_name = 'hpo-worker'") as sampled:
        proc = hpo(*args, env={"HPO_QUEUE": workers.queue})
    peaks = sampled.peaks
    assert proc.returncode == 0, proc.stderr + workers.logs()[-4000:]
    study = storage.get_study(study_name)
    assert study.state == "COMPLETE"
    # Six pool processes and the worker's main process (its reaper): never more than seven, though
    # six trials ran at once and every trial's heartbeat thread shares its process's connection.
    assert max(peaks) <= 7, max(peaks)
    assert max(peaks) >= 2  # the sampler saw the workers' connections at all
    pattern = r"trial (\d+) of study \S+ COMPLETE: claim [\d.]+ ms, run [\d.]+ s, finish [\d.]+ ms"

    def logged() -> list[int]:
        return sorted(int(n) for n in re.findall(pattern, w.text()))

    # One line per trial: what the database cost it (bench/scale.py reads them). The line follows
    # the trial's advance, which may end after the study did (another process ran the last trial).
    wait_for(lambda: logged() == list(range(40)), 30, "every trial's line in the worker's log")
    log = w.text()
    assert not re.search(r"QueuePool limit|too many clients|OperationalError", log), log[-4000:]
