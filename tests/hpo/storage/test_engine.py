"""Engines: SQLite WAL / busy timeout / BEGIN IMMEDIATE (ours and Optuna's), caching, PostgreSQL pre-ping."""

from __future__ import annotations

import sqlite3

import pytest
import sqlalchemy as sa

from hpo.storage import Storage, create_engine, optuna_storage
from hpo.storage._engine import BUSY_TIMEOUT_S, read_engine


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
