"""Real `hpo worker` processes on the machine's Redis and PostgreSQL, for the fault tests.

Isolation: the workers use their own Redis database number (``WORKERS_REDIS_DB``, flushed before
each test) and, when the server lets us create it, their own PostgreSQL database next to the
``test`` one: every worker's reaper scans *every* study of its database, so workers of other
sessions sharing a database would otherwise pick up (or re-send) this session's trials.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from hpo.storage import Storage

ROOT = Path(__file__).resolve().parents[2]
WORKERS_REDIS_DB = int(os.environ.get("HPO_TEST_WORKERS_REDIS_DB", "12"))
WORKERS_PG_DB = os.environ.get("HPO_TEST_WORKERS_PG_DB", "test_hpo_workers")

# Fast fault handling: reaper every second, 3 s leases, 1 s grace before re-sending.
FAST_ENV = {
    "HPO_REAPER_INTERVAL": "1",
    "HPO_LEASE_SECONDS": "3",
    "HPO_REQUEUE_GRACE": "1",
    "HPO_REQUEUE_AFTER": "8",
    "HPO_TASK_TIME_LIMIT": "300",
    "HPO_BLAS_CORETYPE": "inherit",
}

STUDY = """\
name: {name}
seed: 7
dataset: {{kind: digits, subset: 300, val_fraction: 0.25, test_fraction: 0.2}}
model: {{hidden_sizes: [16], activation: relu, weight_init: he}}
training: {{optimizer: sgd, lr: 0.05, epochs: {epochs}, batch_size: {batch_size}}}
limits: {{max_attempts: {max_attempts}}}
search:
  sampler: narrowing
  stages:
    - {{trials: {t0}, epochs: {e0}}}
    - {{trials: {t1}}}
  parameters:
    lr: {{type: float, low: 1.0e-4, high: 1.0, log: true}}
    weight_decay: {{type: float, low: 1.0e-8, high: 1.0e-2, log: true}}
"""


def redis_db_url(base: str, db: int) -> str:
    prefix = base.rsplit("/", 1)[0]
    return f"{prefix}/{db}"


def write_study(
    path: Path,
    name: str,
    *,
    t0: int = 4,
    t1: int = 2,
    e0: int = 2,
    epochs: int = 3,
    batch_size: int = 50,
    max_attempts: int = 3,
) -> Path:
    path.write_text(
        STUDY.format(
            name=name, t0=t0, t1=t1, e0=e0, epochs=epochs, batch_size=batch_size, max_attempts=max_attempts
        )
    )
    return path


def hpo(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """The real CLI in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "hpo", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **FAST_ENV, **(env or {})},
    )


def children(pid: int) -> list[int]:
    """Direct children of a process (from /proc: psutil is not a dependency)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except Exception:  # a service restarting, a table not there yet: poll again
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


class Worker:
    """One `hpo worker` process (which execs a Celery prefork worker) in its own process group."""

    def __init__(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.proc, self.log = proc, log

    @property
    def pid(self) -> int:
        return self.proc.pid

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def ready(self) -> bool:
        return " ready." in self.text()

    def pool(self) -> list[int]:
        return children(self.pid)

    def kill_group(self) -> None:
        """SIGKILL the main process and its pool at once (a machine dying, an OOM of the cgroup)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


class Workers:
    """Starts workers against this test's broker and database; stops them all at teardown."""

    def __init__(self, broker: str, db: str, tmp: Path) -> None:
        self.broker, self.db, self.tmp = broker, db, tmp
        # A queue of this test's own: a worker of an earlier test still shutting down (or its
        # reaper) never sees this test's messages, nor this test's workers an earlier test's.
        self.queue = f"hpo-test-{uuid.uuid4().hex[:8]}"
        self.started: list[Worker] = []

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            **FAST_ENV,
            "HPO_BROKER_URL": self.broker,
            "HPO_DATABASE_URL": self.db,
            "HPO_QUEUE": self.queue,
            **extra,
        }

    def start(
        self,
        n: int = 1,
        *,
        concurrency: int = 2,
        wait: bool = True,
        broker: str | None = None,
        args: Sequence[str] = (),
        prefix: Sequence[str] = (),
        **extra: str,
    ) -> list[Worker]:
        """Start ``n`` workers (``PREFIX hpo worker -c CONCURRENCY -l info ARGS``), ``extra`` in
        their environment. A prefix must exec its command (the worker's pid is the one started:
        its process group is what :meth:`stop` kills), as ``ip netns exec`` and ``unshare`` do."""
        new = []
        for _ in range(n):
            log = self.tmp / f"worker-{len(self.started)}.log"
            env = self.env(**extra)
            if broker:
                env["HPO_BROKER_URL"] = broker
            cmd = [sys.executable, "-m", "hpo", "worker", "-c", str(concurrency), "-l", "info", *args]
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    [*prefix, *cmd],
                    cwd=ROOT,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
            worker = Worker(proc, log)
            self.started.append(worker)
            new.append(worker)
        if wait:
            for worker in new:
                self.wait_ready(worker, concurrency)
        return new

    def wait_ready(self, worker: Worker, concurrency: int = 2, timeout: float = 30) -> None:
        def ready() -> bool:
            if worker.proc.poll() is not None:
                raise AssertionError(f"worker exited with {worker.proc.returncode}:\n{worker.text()}")
            return worker.ready() and len(worker.pool()) >= concurrency

        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                raise AssertionError(f"worker not ready after {timeout} s:\n{worker.text()}")
            time.sleep(0.1)

    def logs(self) -> str:
        return "\n".join(w.text() for w in self.started)

    def stop(self) -> None:
        for w in self.started:
            if w.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(w.pid, signal.SIGTERM)
        for w in self.started:
            try:
                w.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(w.pid, signal.SIGKILL)
                w.proc.wait(timeout=10)
            # Pool processes left behind (main killed first) share the group: make sure.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(w.pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def workers_pg_url(postgres_url: str) -> str:
    """A PostgreSQL database for these tests only, created next to ``test`` if the server allows;
    otherwise ``postgres_url`` itself."""
    import sqlalchemy as sa

    url = sa.engine.make_url(postgres_url)
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            exists = conn.execute(
                sa.text("select 1 from pg_database where datname = :d"), {"d": WORKERS_PG_DB}
            ).first()
            if not exists:
                conn.execute(sa.text(f'create database "{WORKERS_PG_DB}"'))
        own = url.set(database=WORKERS_PG_DB).render_as_string(hide_password=False)
    except sa.exc.SQLAlchemyError:
        own = postgres_url
    finally:
        engine.dispose()
    Storage(own).upgrade()
    return own


@pytest.fixture(autouse=True)
def _artifacts_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every study a test submits keeps its models under the test's own folder: the default for a
    PostgreSQL database, ./hpo-artifacts, would be the repository's (the CLI runs there)."""
    monkeypatch.setenv("HPO_ARTIFACTS", str(tmp_path / "artifacts"))


@pytest.fixture
def broker_url(redis_url: str) -> str:
    """This session's Redis database, flushed before each test."""
    import redis

    url = redis_db_url(redis_url, WORKERS_REDIS_DB)
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


@pytest.fixture
def study_name(request: pytest.FixtureRequest) -> str:
    return f"w-{request.node.name[:40].replace('[', '-').replace(']', '')}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def storage(workers_pg_url: str, study_name: str) -> Iterator[Storage]:
    st = Storage(workers_pg_url)
    yield st
    try:
        for study in st.list_studies():
            if study.name.startswith(study_name):
                st.delete_study(study.name)
    finally:
        st.dispose()


@pytest.fixture
def workers(broker_url: str, workers_pg_url: str, storage: Storage, tmp_path: Path) -> Iterator[Workers]:
    # Depends on ``storage`` so that the workers stop before the study is deleted.
    ws = Workers(broker_url, workers_pg_url, tmp_path)
    try:
        yield ws
    finally:
        ws.stop()


SYNTHETIC_STUDY = """\
name: {name}
seed: 0
dataset: {{kind: digits}}
training: {{epochs: {epochs}}}
search:
  stages: [{{trials: {t0}}}, {{trials: {t1}}}]
  parameters:
    lr: {{type: float, low: 1.0e-4, high: 1.0, log: true}}
    weight_decay: {{type: float, low: 1.0e-8, high: 1.0e-2, log: true}}
synthetic: {{epoch_seconds: {epoch_seconds}}}
"""


def write_synthetic_study(
    path: Path, name: str, *, t0: int, t1: int, epochs: int = 2, epoch_seconds: float = 0.02
) -> Path:
    """A study of synthetic trials (``epochs`` sleeps of ``epoch_seconds``, nothing trained): many
    trials on many processes, or trials of a length that does not depend on the machine."""
    text = SYNTHETIC_STUDY.format(name=name, t0=t0, t1=t1, epochs=epochs, epoch_seconds=epoch_seconds)
    path.write_text(text)
    return path


class ConnectionPeaks:
    """Samples, every 50 ms until stopped, how many connections to ``url``'s database match
    ``where`` (SQL on ``pg_stat_activity``); the sampler's own is named ``monitor``."""

    def __init__(self, url: str, where: str) -> None:
        import sqlalchemy as sa

        self.peaks: list[int] = []
        self._done = threading.Event()
        self._engine = sa.create_engine(
            url, poolclass=sa.pool.NullPool, connect_args={"application_name": "monitor"}
        )
        self._query = sa.text(f"SELECT count(*) FROM pg_stat_activity WHERE datname = :d AND {where}")
        self._database = sa.engine.make_url(url).database
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        with self._engine.connect() as conn:
            while not self._done.wait(0.05):
                self.peaks.append(int(conn.execute(self._query, {"d": self._database}).scalar_one()))
                conn.rollback()  # a fresh snapshot of pg_stat_activity each time

    def __enter__(self) -> ConnectionPeaks:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()
        self._engine.dispose()
