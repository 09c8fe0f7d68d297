"""Engines: SQLite WAL / busy timeout / BEGIN IMMEDIATE (ours and Optuna's), caching, PostgreSQL pre-ping."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from hpo.storage import Storage, create_engine, optuna_storage
from hpo.storage._engine import BUSY_TIMEOUT_S, read_engine
from hpo.storage._optuna_storage import _engine_kwargs


def _locked_by(url: str) -> bool:
    """Whether another connection currently holds the SQLite write lock."""
    other = sqlite3.connect(str(sa.engine.make_url(url).database), timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError as exc:
        assert "locked" in str(exc)
        return True
    finally:
        other.close()


def test_sqlite_connection_settings(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    assert create_engine(sqlite_url) is engine  # one per URL per process
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == int(BUSY_TIMEOUT_S * 1000)
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


@pytest.mark.parametrize("which", ["hpo", "optuna"])
def test_sqlite_write_transactions_begin_immediate(sqlite_url: str, which: str) -> None:
    Storage(sqlite_url).upgrade()
    engine = create_engine(sqlite_url) if which == "hpo" else optuna_storage(sqlite_url).engine
    with engine.begin() as conn:
        conn.exec_driver_sql("SELECT 1").scalar()
        assert _locked_by(sqlite_url)  # a read first still holds the write lock: no lock upgrade later
    assert not _locked_by(sqlite_url)
    # Read-only transactions begin deferred and never block writers.
    with read_engine(create_engine(sqlite_url)).connect() as conn:
        conn.exec_driver_sql("SELECT count(*) FROM hpo_studies").scalar()
        assert not _locked_by(sqlite_url)


def test_sqlite_transactions_roll_back(sqlite_url: str) -> None:
    Storage(sqlite_url).upgrade()
    engine = create_engine(sqlite_url)
    with pytest.raises(RuntimeError), engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE hpo_scratch (x INTEGER)")  # DDL is transactional too
        raise RuntimeError
    assert "hpo_scratch" not in sa.inspect(engine).get_table_names()


def test_postgres_engine(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    assert engine.pool._pre_ping
    assert create_engine(postgres_url) is engine
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT 1")).scalar() == 1


def test_postgres_connections_time_out_on_a_dead_network_unless_the_url_says(postgres_url: str) -> None:
    # What the server sees of the client socket's settings is not exposed; libpq's own record is.
    def tcp_user_timeout(url: str) -> str:
        with create_engine(url).connect() as conn:
            raw = conn.connection.dbapi_connection
            assert raw is not None
            return str(raw.info.get_parameters().get("tcp_user_timeout", ""))

    assert tcp_user_timeout(postgres_url) == "30000"
    given = f"{postgres_url}?tcp_user_timeout=3000"
    assert tcp_user_timeout(given) == "3000"
    # Optuna's storage gets the same arguments.
    assert _engine_kwargs(postgres_url)["connect_args"]["tcp_user_timeout"] == 30_000
    assert "tcp_user_timeout" not in _engine_kwargs(given)["connect_args"]


def _connect_after(url: str, barrier: Any, results: Any) -> None:
    barrier.wait()
    try:
        with create_engine(url).connect() as conn:
            results.put(conn.exec_driver_sql("PRAGMA journal_mode").scalar())
    except Exception as exc:  # reported to the parent, which fails the test with it
        results.put(f"{type(exc).__name__}: {str(exc)[:100]}")


ROUNDS, RACERS = 40, 10


def test_sqlite_new_file_many_first_connections_at_once(tmp_path: Path) -> None:
    """Processes that open a new SQLite file at the same moment all switch it to WAL.

    Two connections switching a new file's journal mode at once made SQLite answer "database is
    locked" to one of them without waiting: about 1 connection in 100 here with 10 at once, so
    the old code fails these 400 connections with a probability of about 98%.
    """
    ctx = mp.get_context("fork")
    outcomes: dict[str, int] = {}
    for round_ in range(ROUNDS):
        path = tmp_path / f"new-{round_}.db"
        sqlite3.connect(path).execute("CREATE TABLE t (a)").connection.close()  # a rollback-journal file
        barrier, results = ctx.Barrier(RACERS, timeout=30), ctx.Queue()
        url = f"sqlite:///{path}"
        procs = [ctx.Process(target=_connect_after, args=(url, barrier, results)) for _ in range(RACERS)]
        for p in procs:
            p.start()
        for _ in procs:  # read before joining: a child exits only once its result is sent
            outcome = results.get(timeout=60)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        for p in procs:
            p.join(10)
    assert outcomes == {"wal": ROUNDS * RACERS}, outcomes


def test_concurrent_first_submits_on_a_new_sqlite_file(tmp_path: Path) -> None:
    """Several `hpo submit` of one study started together on a new file: all succeed, one study."""
    (tmp_path / "s.yaml").write_text(
        "name: race\nseed: 1\ndataset: {kind: digits, subset: 200}\nmodel: {hidden_sizes: [8]}\n"
        "training: {epochs: 1}\nsearch:\n  trials: 4\n  parameters:\n"
        "    lr: {type: float, low: 1.0e-3, high: 1.0, log: true}\n"
    )
    command = [sys.executable, "-m", "hpo", "submit", "s.yaml", "--no-progress", "--workers", "1"]
    procs = [
        subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err for _, err in outputs]
    storage = Storage(f"sqlite:///{tmp_path / 'hpo.db'}")
    (study,) = storage.list_studies()
    assert study.state == "COMPLETE"
    assert len(storage.trials(study.id)) == 4
