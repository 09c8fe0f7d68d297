"""Issue 9's classes that need real workers: truthful outcomes, queue binding, refusing to start,
resuming on the broker, and followers that ride out a network blip.

Real Redis, real PostgreSQL, real `hpo worker` processes (tests/workers/conftest.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from hpo.storage import Storage
from tests.invariants import check_study
from tests.tcp_proxy import proxied

from .conftest import FAST_ENV, ROOT, Workers, hpo, wait_for, write_study

pytestmark = pytest.mark.services


def _submit(
    path: Path,
    workers: Workers,
    *extra: str,
    db: str | None = None,
    broker: str | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    args = [
        "submit",
        str(path),
        "--broker",
        broker or workers.broker,
        "--db",
        db or workers.db,
        "--no-progress",
    ]
    return hpo(*args, *extra, timeout=timeout, env={"HPO_QUEUE": workers.queue})


def test_data_missing_where_the_workers_run_fails_the_study(
    tmp_path: Path, workers: Workers, storage: Storage, study_name: str
) -> None:
    """The submitter may not see the workers' files: it notes that, and the study stops FAILED
    with the data error as its reason (not COMPLETE); --wait and status --watch exit 1."""
    workers.start(1)
    path = write_study(tmp_path / "s.yaml", study_name, t0=6, t1=2)
    missing = tmp_path / "only-on-the-workers.csv"
    path.write_text(path.read_text().replace("{kind: digits, subset: 300,", f"{{kind: csv, path: {missing},"))
    proc = _submit(path, workers, "--wait")
    assert proc.returncode == 1, proc.stderr
    assert f"dataset.path {missing} is not on this host" in proc.stderr
    study = storage.get_study(study_name)
    assert study.state == "FAILED"
    assert "dataset.path: csv file not found" in (study.reason or "")
    assert "the data cannot be loaded on" in (study.reason or "")
    watch = hpo("status", study_name, "--watch", "--db", workers.db)
    assert watch.returncode == 1, watch.stderr


def test_a_worker_never_runs_another_queues_or_a_local_studys_trials(
    tmp_path: Path, workers: Workers, storage: Storage, study_name: str
) -> None:
    from hpo.orchestration import load_executor, submit_study
    from hpo.spec import load_study_spec

    workers.start(1)
    other_queue = f"{workers.queue}-other"
    other = f"{study_name}-other"
    local = f"{study_name}-local"
    # A study bound to another queue (nobody consumes it) and one run by local processes.
    for name, queue in ((other, other_queue), (local, None)):
        spec = load_study_spec(write_study(tmp_path / f"{name}.yaml", name, t0=3, t1=1))
        submit_study(storage, spec, queue=queue)
    foreign = [t.id for n in (other, local) for t in storage.trials(storage.get_study(n).id)]
    # Their trial ids sent to the queue this worker consumes, as an attacker with broker access can.
    load_executor("celery", workers.broker, workers.db, queue=workers.queue).dispatch(foreign)
    # Then a study of its own queue, which it runs to the end (the foreign messages went first).
    assert (
        _submit(write_study(tmp_path / "s.yaml", study_name, t0=4, t1=2), workers, "--wait").returncode == 0
    )
    check_study(storage, study_name)
    for name in (other, local):
        trials = storage.trials(storage.get_study(name).id)
        assert [(t.state, t.attempts, t.worker) for t in trials] == [("PENDING", 0, None)] * 3, name


def _fresh_database(base: str) -> str:
    url = sa.engine.make_url(base)
    name = f"hpo_empty_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'create database "{name}"'))
    admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


def _drop_database(base: str, url: str) -> None:
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'drop database if exists "{sa.engine.make_url(url).database}" with (force)'))
    admin.dispose()


@pytest.mark.parametrize("problem", ["unreachable", "no such role", "schema not created", "schema behind"])
def test_a_worker_refuses_to_start_on_a_database_it_cannot_use(
    workers_pg_url: str, broker_url: str, problem: str
) -> None:
    base = sa.engine.make_url(workers_pg_url)
    fresh = None
    if problem == "unreachable":
        db = base.set(port=1).render_as_string(hide_password=False)
    elif problem == "no such role":
        db = base.set(username="no_such_role").render_as_string(hide_password=False)
    else:
        db = fresh = _fresh_database(workers_pg_url)
        if problem == "schema behind":
            fresh_storage = Storage(db)
            fresh_storage.upgrade()
            fresh_storage.dispose()
            engine = sa.create_engine(db)
            with engine.begin() as conn:
                conn.execute(sa.text("update hpo_alembic_version set version_num = '0003'"))
            engine.dispose()
    try:
        env = {**FAST_ENV, "HPO_QUEUE": f"hpo-refuse-{uuid.uuid4().hex[:6]}"}
        for command in (
            [sys.executable, "-m", "hpo", "worker", "--db", db, "--broker", broker_url],
            # Started by Celery itself (as flower or a custom deployment might): the same refusal.
            [sys.executable, *f"-m celery -A workers.app:app worker -c 1 -Q {env['HPO_QUEUE']}".split()],
        ):
            proc = subprocess.run(
                command,
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=60,
                env={**os.environ, **env, "HPO_DATABASE_URL": db, "HPO_BROKER_URL": broker_url},
            )
            assert proc.returncode != 0, (command, proc.stdout, proc.stderr)
            assert " ready." not in proc.stdout + proc.stderr
        first = subprocess.run(
            [sys.executable, "-m", "hpo", "worker", "--db", db, "--broker", broker_url],
            cwd=ROOT, capture_output=True, text=True, timeout=60, env={**os.environ, **env},
        )  # fmt: skip
        lines = first.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), first.stderr
    finally:
        if fresh is not None:
            _drop_database(workers_pg_url, fresh)


def test_resume_of_a_broker_study_queues_it_there_again(
    tmp_path: Path, workers: Workers, storage: Storage, study_name: str
) -> None:
    workers.start(1)
    path = write_study(tmp_path / "s.yaml", study_name, t0=6, t1=2, e0=100, epochs=60, batch_size=1)
    assert _submit(path, workers).returncode == 0
    sid = storage.get_study(study_name).id
    wait_for(lambda: storage.counts(sid).get("COMPLETE", 0) >= 1, 60, "a finished trial")
    assert hpo("cancel", study_name, "--db", workers.db).returncode == 0
    # Without its broker, resume refuses rather than running the study here.
    no_broker = hpo("resume", study_name, "--db", workers.db, env={"HPO_BROKER_URL": ""})
    assert no_broker.returncode == 2, no_broker.stderr
    assert "--local" in no_broker.stderr and len(no_broker.stderr.strip().splitlines()) == 1
    assert storage.get_study(study_name).state == "CANCELLED"
    proc = hpo(
        "resume", study_name, "--db", workers.db, "--broker", workers.broker, "--wait", "--no-progress",
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr + workers.logs()[-3000:]
    facts = check_study(storage, study_name)
    assert all(t.worker and t.worker.endswith(":celery") for t in facts["trials"])  # none ran here


def test_wait_rides_out_a_database_and_broker_blip(
    tmp_path: Path, workers: Workers, storage: Storage, study_name: str
) -> None:
    """The follower's own links to PostgreSQL and Redis are cut for 4 s (the workers' are not)."""
    workers.start(1)
    path = write_study(tmp_path / "s.yaml", study_name, t0=10, t1=4, e0=40, epochs=40, batch_size=10)
    pg = sa.engine.make_url(workers.db)
    redis_port = int(workers.broker.split(":")[2].split("/")[0])
    with proxied(pg.port or 5432) as db_proxy, proxied(redis_port) as redis_proxy:
        db = pg.set(port=db_proxy.port).render_as_string(hide_password=False)
        broker = workers.broker.replace(f":{redis_port}/", f":{redis_proxy.port}/")
        result: dict[str, subprocess.CompletedProcess[str]] = {}
        follower = threading.Thread(
            target=lambda: result.setdefault(
                "proc", _submit(path, workers, "--wait", db=db, broker=broker, timeout=180)
            )
        )
        follower.start()
        wait_for(
            lambda: storage.counts(storage.get_study(study_name).id).get("COMPLETE", 0) >= 2, 60, "progress"
        )
        db_proxy.cut()
        redis_proxy.cut()
        time.sleep(4)
        db_proxy.restore()
        redis_proxy.restore()
        follower.join(180)
    proc = result["proc"]
    assert proc.returncode == 0, proc.stderr
    assert "retrying" in proc.stderr and "reconnected after" in proc.stderr
    assert "Traceback" not in proc.stderr
    check_study(storage, study_name)
