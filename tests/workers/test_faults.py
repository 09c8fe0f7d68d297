"""Remote execution under faults: real Redis, real PostgreSQL, real `hpo worker` processes.

Every study-level test ends with ``check_study`` (invariants I1-I5 of shared/DESIGN.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa

from hpo.storage import Storage, TrialRow
from tests.hpo.storage import helpers
from tests.invariants import check_study

from .conftest import Workers, alive, hpo, wait_for, write_study

pytestmark = pytest.mark.services

REDIS_START = [
    "redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379",
    "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis", "--logfile", "/var/log/redis/ci.log",
]  # fmt: skip


def submit(
    path: Path, workers: Workers, *, wait: bool = False, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    args = ["submit", str(path), "--broker", workers.broker, "--db", workers.db, "--no-progress"]
    proc = hpo(*args, *(["--wait"] if wait else []), timeout=timeout, env={"HPO_QUEUE": workers.queue})
    assert proc.returncode == 0, proc.stderr + "\n--- workers ---\n" + workers.logs()[-5000:]
    return proc


def wait_finished(storage: Storage, name: str, workers: Workers, timeout: float = 90) -> None:
    try:
        wait_for(lambda: storage.get_study(name).state != "RUNNING", timeout, f"study {name} to finish", 0.3)
    except AssertionError as exc:
        study = storage.get_study(name)
        counts = storage.counts(study.id)
        raise AssertionError(f"{exc}: {counts}\n--- workers ---\n{workers.logs()[-6000:]}") from None


def running_trial(storage: Storage, name: str, *, number: int | None = None, attempt: int | None = None):
    study = storage.get_study(name)
    for t in storage.trials(study.id, states=("RUNNING",)):
        wanted = (number is None or t.number == number) and (attempt is None or t.attempts == attempt)
        if wanted and t.worker and t.started_at is not None:
            return t
    return None


def pool_pid(trial) -> int:
    """The pool process running a trial: its claim is ``host:pid:celery``."""
    return int(trial.worker.split(":")[1])


def one_optuna_trial_per_trial(storage: Storage, name: str) -> None:
    trials = storage.trials(storage.get_study(name).id)
    otrials = optuna.load_study(study_name=name, storage=storage.url).get_trials(deepcopy=False)
    ids = [ot.user_attrs["hpo_trial_id"] for ot in otrials]
    assert len(ids) == len(set(ids)) == len(trials), (len(ids), len(set(ids)), len(trials))


def snapshot(storage: Storage, name: str) -> list[tuple]:
    return [
        (
            t.id,
            t.state,
            t.value,
            t.attempts,
            t.worker,
            t.finished_at,
            t.reason,
            json.dumps(t.params, sort_keys=True),
        )
        for t in storage.trials(storage.get_study(name).id)
    ]


# ---------------------------------------------------------------------------------------------


def test_two_stage_study_on_two_workers(
    tmp_path: Path, workers: Workers, storage: Storage, study_name: str
) -> None:
    workers.start(2)
    proc = submit(write_study(tmp_path / "s.yaml", study_name, t0=16, t1=8), workers, wait=True)
    assert proc.stdout.splitlines()[0] == study_name
    facts = check_study(storage, study_name)
    stages = storage.stages(facts["study"].id)
    assert [s.n_trials for s in stages] == [16, 8]
    assert len(facts["trials"]) == 24  # exactly the budget
    first, second = (json.loads(s.space) for s in stages)
    assert first != second  # narrowed once
    one_optuna_trial_per_trial(storage, study_name)
    # both worker processes took part
    assert len({t.worker.split(":")[1] for t in facts["trials"]}) >= 2
    # each recorded the compute of its trials: the stage's epochs, seconds that add up
    epochs = {s.index: s.epochs for s in stages}
    assert all(t.epochs_trained == epochs[t.stage] for t in facts["trials"])
    compute = storage.compute(facts["study"].id)
    assert compute.total.epochs == sum(epochs[t.stage] for t in facts["trials"])
    assert compute.total.seconds == pytest.approx(sum(t.train_seconds or 0.0 for t in facts["trials"]))
    assert all(t.train_seconds and t.train_seconds > 0 for t in facts["trials"])


def test_sigkill_of_a_pool_process_mid_trial(
    tmp_path: Path, workers: Workers, storage: Storage, study_name: str
) -> None:
    (w,) = workers.start(1)
    submit(
        write_study(tmp_path / "s.yaml", study_name, t0=4, t1=2, e0=800, epochs=200, batch_size=1), workers
    )
    victim = wait_for(lambda: running_trial(storage, study_name), 30, "a running trial")
    pid = pool_pid(victim)
    assert pid in w.pool()
    time.sleep(0.5)  # well inside the trial (about ten seconds long)
    os.kill(pid, signal.SIGKILL)
    wait_finished(storage, study_name, workers, timeout=90)
    facts = check_study(storage, study_name)
    # Exactly the trial the killed process was running is run a second time (normally the victim;
    # if the victim had just finished, the one that process took next).
    retried = [t for t in facts["trials"] if t.attempts == 2]
    assert len(retried) == 1 and retried[0].state == "COMPLETE", [(t.number, t.attempts) for t in retried]
    assert alive(w.pid)
    one_optuna_trial_per_trial(storage, study_name)
    assert sum(t.attempts for t in facts["trials"]) == len(facts["trials"]) + 1


def test_sigkill_of_a_whole_worker_mid_trial(
    tmp_path: Path, workers: Workers, storage: Storage, study_name: str
) -> None:
    ws = workers.start(2)
    submit(
        write_study(tmp_path / "s.yaml", study_name, t0=4, t1=2, e0=800, epochs=200, batch_size=1), workers
    )

    def on_first() -> list[TrialRow]:
        study = storage.get_study(study_name)
        pool = ws[0].pool()
        running = [
            t for t in storage.trials(study.id, states=("RUNNING",)) if t.worker and pool_pid(t) in pool
        ]
        return running

    wait_for(on_first, 30, "a trial running on the first worker")
    time.sleep(0.5)
    victims = on_first()
    killed_at = datetime.now(UTC)
    ws[0].kill_group()
    wait_finished(storage, study_name, workers, timeout=60)  # trials take ~10 s, leases 3 s
    check_study(storage, study_name)
    # A trial that happened to finish just before the kill landed was not a victim; every trial
    # still running on the dead worker must have been run again, by the surviving worker.
    rows = [helpers.trial(storage, v.id) for v in victims]
    killed = [r for r in rows if r is not None and (r.attempts >= 2 or r.finished_at > killed_at)]
    assert killed, "the kill landed after every trial of the first worker had finished"
    for row in killed:
        assert row.state == "COMPLETE" and row.attempts >= 2, (row.state, row.attempts)
        # Run again by a pool process of the surviving worker (each logs its id when it starts:
        # the pool may have replaced that process since, so its current children are no proof).
        assert f"trial worker {row.worker} is a pool process of" in ws[1].text(), row.worker
    one_optuna_trial_per_trial(storage, study_name)


def test_a_trial_that_kills_its_worker_every_time_stops_at_the_cap(
    tmp_path: Path, workers: Workers, storage: Storage, study_name: str
) -> None:
    """The test plays the kernel's OOM killer for trial 0: whichever pool process runs it is
    SIGKILLed, on every attempt. Lease expiry, re-sending and the attempt cap are the real ones."""
    (w,) = workers.start(1)
    submit(
        write_study(
            tmp_path / "s.yaml", study_name, t0=3, t1=2, e0=300, epochs=100, batch_size=1, max_attempts=2
        ),
        workers,
    )
    killed: list[int] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        study = storage.get_study(study_name)
        row = next(t for t in storage.trials(study.id) if t.number == 0)
        if row.state in ("COMPLETE", "FAIL", "PRUNED"):
            break
        if row.state == "RUNNING" and row.worker and row.attempts > len(killed):
            pid = pool_pid(row)
            assert pid in w.pool()
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        time.sleep(0.05)
    wait_finished(storage, study_name, workers)
    facts = check_study(storage, study_name)
    row = next(t for t in facts["trials"] if t.number == 0)
    assert len(killed) == 2
    assert row.state == "FAIL" and row.attempts == 2, (row.state, row.attempts)
    assert "attempt cap" in row.reason
    assert all(t.state == "COMPLETE" for t in facts["trials"] if t.number != 0)
    one_optuna_trial_per_trial(storage, study_name)


def _redis_ping(port: int = 6379) -> bool:
    return (
        subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True).stdout.strip()
        == "PONG"
    )


def test_redis_restart_mid_study(tmp_path: Path, workers: Workers, storage: Storage, study_name: str) -> None:
    workers.start(1)
    submit(
        write_study(tmp_path / "s.yaml", study_name, t0=10, t1=2, e0=150, epochs=100, batch_size=1), workers
    )
    sid = storage.get_study(study_name).id
    wait_for(lambda: storage.counts(sid).get("COMPLETE", 0) >= 2, 60, "two finished trials")
    assert storage.counts(sid).get("PENDING", 0) >= 3  # messages are waiting in Redis
    try:
        subprocess.run(["redis-cli", "-p", "6379", "shutdown", "nosave"], capture_output=True, timeout=10)
        wait_for(lambda: not _redis_ping(), 10, "Redis to stop")
    finally:
        if not _redis_ping():
            subprocess.run(REDIS_START, check=True, timeout=10)
        wait_for(_redis_ping, 20, "Redis to answer PING")
    wait_finished(storage, study_name, workers, timeout=90)
    check_study(storage, study_name)
    one_optuna_trial_per_trial(storage, study_name)
    assert "reaper re-sent" in workers.logs()  # the lost messages came back from the database


def test_redis_down_at_submit_writes_nothing(
    tmp_path: Path, workers_pg_url: str, storage: Storage, study_name: str
) -> None:
    path = write_study(tmp_path / "s.yaml", study_name)
    proc = hpo(
        "submit", str(path), "--broker", "redis://127.0.0.1:6390/0", "--db", workers_pg_url, "--no-progress"
    )
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "127.0.0.1:6390" in lines[0] and "broker" in lines[0].lower(), lines[0]
    assert proc.stdout.strip() == ""
    assert storage.find_study(study_name) is None


def test_worker_started_before_redis_waits_for_it(
    tmp_path: Path, workers: Workers, storage: Storage, study_name: str
) -> None:
    port = 6391
    broker = f"redis://127.0.0.1:{port}/0"
    assert not _redis_ping(port), f"port {port} is in use"
    (w,) = workers.start(1, wait=False, broker=broker)
    pidfile = tmp_path / "redis-6391.pid"
    try:
        time.sleep(4)
        assert w.proc.poll() is None, w.text()
        assert not w.ready()
        subprocess.run(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "yes", "--pidfile", str(pidfile), "--dir", str(tmp_path)],
            check=True, timeout=10,
        )  # fmt: skip
        wait_for(lambda: _redis_ping(port), 10, "the second Redis")
        workers.wait_ready(w, timeout=40)
        workers.broker = broker
        submit(write_study(tmp_path / "s.yaml", study_name, t0=4, t1=2), workers, wait=True, timeout=90)
        check_study(storage, study_name)
    finally:
        subprocess.run(["redis-cli", "-p", str(port), "shutdown", "nosave"], capture_output=True, timeout=10)
        if pidfile.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pidfile.read_text().strip()), signal.SIGKILL)


def test_postgres_connections_killed_mid_trial(
    tmp_path: Path, workers: Workers, storage: Storage, study_name: str
) -> None:
    workers.start(1)
    submit(
        write_study(tmp_path / "s.yaml", study_name, t0=4, t1=2, e0=400, epochs=300, batch_size=1), workers
    )
    dbname = sa.engine.make_url(workers.db).database
    admin = sa.create_engine(workers.db, isolation_level="AUTOCOMMIT")
    killed = 0
    try:
        for _ in range(2):
            victim = wait_for(lambda: running_trial(storage, study_name), 30, "a running trial")
            time.sleep(1.2)  # after a heartbeat or two
            with admin.connect() as conn:
                killed += len(
                    conn.execute(
                        sa.text(
                            "select pg_terminate_backend(pid) from pg_stat_activity "
                            "where datname = :d and pid <> pg_backend_pid() "
                            "and backend_type = 'client backend'"
                        ),
                        {"d": dbname},
                    ).all()
                )
            wait_for(
                lambda v=victim: helpers.trial(storage, v.id).state != "RUNNING", 30, "the victim to finish"
            )
    finally:
        admin.dispose()
    assert killed >= 1
    wait_finished(storage, study_name, workers)
    facts = check_study(storage, study_name)
    one_optuna_trial_per_trial(storage, study_name)
    assert all(t.state == "COMPLETE" for t in facts["trials"])


def test_duplicate_and_hostile_messages_change_nothing(
    tmp_path: Path, workers: Workers, storage: Storage, study_name: str
) -> None:
    from hpo import Settings
    from workers.app import create_app

    (w,) = workers.start(1)
    submit(write_study(tmp_path / "s.yaml", study_name, t0=3, t1=2), workers, wait=True)
    check_study(storage, study_name)
    before = snapshot(storage, study_name)
    complete = [row[0] for row in before if row[1] == "COMPLETE"]
    pool_before = sorted(w.pool())

    app = create_app(Settings(broker_url=workers.broker, database_url=workers.db, queue=workers.queue))
    try:
        for trial_id in complete[:2]:
            app.send_task(
                "hpo.run_trial", args=[trial_id], task_id=f"hpo-trial-{trial_id}-dup", queue=workers.queue
            )
        app.send_task("hpo.run_trial", args=[complete[0]], queue=workers.queue, serializer="pickle")
        app.send_task("hpo.drop_everything", args=[complete[0]], queue=workers.queue)
        for args in (["1; drop table"], [-5], [complete[0], 2], [True], [str(complete[0])]):
            app.send_task("hpo.run_trial", args=args, queue=workers.queue)
        # the worker consumes them all: queue and unacknowledged set empty
        import redis

        client = redis.Redis.from_url(workers.broker)
        wait_for(
            lambda: client.llen(workers.queue) == 0 and client.hlen("unacked") == 0, 30, "the queue to drain"
        )
        wait_for(lambda: w.text().count("'skipped'") >= 2, 20, "both duplicates to be skipped")
    finally:
        app.close()
    log = w.text()
    assert "pickle" in log  # refused: content type not accepted
    assert "unregistered task" in log.lower()
    assert "invalid trial id" in log
    assert snapshot(storage, study_name) == before
    one_optuna_trial_per_trial(storage, study_name)
    # the worker is alive, with the same pool, and keeps processing studies
    assert w.proc.poll() is None and sorted(w.pool()) == pool_before
    second = f"{study_name}-b"
    submit(write_study(tmp_path / "b.yaml", second, t0=3, t1=2), workers, wait=True)
    check_study(storage, second)


def test_several_workers_on_one_sqlite_file(tmp_path: Path, workers: Workers, study_name: str) -> None:
    db = f"sqlite:///{tmp_path / 'hpo.db'}"
    Storage(db).upgrade()
    workers.db = db
    workers.start(2, concurrency=2)
    proc = submit(write_study(tmp_path / "s.yaml", study_name, t0=24, t1=8), workers, wait=True)
    check_study(Storage(db), study_name)
    text = (proc.stdout + proc.stderr + workers.logs()).lower()
    assert "database is locked" not in text
    assert "locked" not in text
