"""Database connections of workers: one per pool process, and what each trial cost, logged."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import sqlalchemy as sa

from hpo.storage import Storage
from tests.workers.conftest import Workers, hpo, wait_for

STUDY = """\
name: {name}
seed: 0
dataset: {{kind: digits}}
training: {{epochs: 2}}
search:
  stages: [{{trials: 24}}, {{trials: 16}}]
  parameters:
    lr: {{type: float, low: 1.0e-4, high: 1.0, log: true}}
    weight_decay: {{type: float, low: 1.0e-8, high: 1.0e-2, log: true}}
synthetic: {{epoch_seconds: 0.02}}
"""


def test_each_pool_process_holds_at_most_one_connection(
    tmp_path: Path, workers: Workers, storage: Storage, study_name: str
) -> None:
    (w,) = workers.start(1, concurrency=6)
    workers.wait_ready(w, concurrency=6)
    database = sa.engine.make_url(workers.db).database
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = :d AND application_name = 'hpo-worker'"
    )
    peaks: list[int] = []
    done = threading.Event()
    monitor = sa.create_engine(workers.db, poolclass=sa.pool.NullPool)

    def sample() -> None:
        with monitor.connect() as conn:
            while not done.wait(0.05):
                peaks.append(int(conn.execute(query, {"d": database}).scalar_one()))
                conn.rollback()

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    path = tmp_path / "s.yaml"
    path.write_text(STUDY.format(name=study_name))
    args = ["submit", str(path), "--broker", workers.broker, "--db", workers.db, "--no-progress", "--wait"]
    proc = hpo(*args, env={"HPO_QUEUE": workers.queue})
    done.set()
    sampler.join()
    monitor.dispose()
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
