"""Engines: one per URL per process, configured for many writers, and dropped in forked children.

SQLite gets WAL, a busy timeout, foreign keys and ``BEGIN IMMEDIATE`` on every write transaction
(pysqlite's own BEGIN is disabled and SQLAlchemy's ``begin`` event emits ours, the recipe in
SQLAlchemy's SQLite documentation). A read-only connection (:func:`read_engine`) uses a deferred
BEGIN, which in WAL mode never waits for a writer. SQLite ignores ``FOR UPDATE``: every
compare-and-set in :mod:`hpo.storage` is a conditional ``UPDATE`` checked by the rows it returns.

PostgreSQL gets ``pool_pre_ping`` (idle connections are dropped by servers and proxies) and a small
pool, sized by the ``HPO_DB_POOL_SIZE`` / ``HPO_DB_MAX_OVERFLOW`` settings (one connection in each of a
worker's pool processes).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url

from .._process_cache import ProcessCache
from .._urls import check_database_url, redact_url
from ._errors import StorageError

__all__ = [
    "BUSY_TIMEOUT_S",
    "LOCK_CLASS",
    "advisory_lock",
    "advisory_lock_expr",
    "create_engine",
    "dispose_engine",
    "dispose_engines",
    "exclusive",
    "is_sqlite",
    "postgres_connect_args",
    "read_engine",
    "redact",
    "sqlite_begin_immediate",
    "try_advisory_lock",
]

BUSY_TIMEOUT_S = 30.0
"""How long a SQLite connection waits for the write lock before "database is locked"."""

LOCK_CLASS = 0x68706F31
"""First key of hpo's PostgreSQL advisory locks (``'hpo1'``); the second key names the object."""

_BEGIN_OPTION = "hpo_sqlite_begin"

_engines: ProcessCache[str, Engine] = ProcessCache(
    close=Engine.dispose,
    # The parent's connections belong to the parent: a forked child drops them without closing.
    abandon=lambda engine: engine.dispose(close=False),
)


def redact(url: str | URL) -> str:
    """The URL as text with any password hidden, for messages (any text: see ``redact_url``)."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    return redact_url(url)


def is_sqlite(engine_or_url: Engine | Connection | str | URL) -> bool:
    """Whether an engine, connection or URL is SQLite."""
    if isinstance(engine_or_url, Engine | Connection):
        return engine_or_url.dialect.name == "sqlite"
    return make_url(engine_or_url).get_backend_name() == "sqlite"


def _check_url(url: str | URL) -> str:
    """The URL checked and normalized (:func:`hpo._urls.check_database_url`)."""
    text = url.render_as_string(hide_password=False) if isinstance(url, URL) else url
    return check_database_url(text)


def sqlite_begin_immediate(engine: Engine) -> None:
    """Make ``engine`` (SQLite) use WAL, a busy timeout and ``BEGIN IMMEDIATE`` for transactions.

    Also used for the engine of Optuna's storage. Connections already pooled are not changed: call
    this before the engine connects, or dispose of its pool afterwards.

    Args:
        engine: A SQLite engine.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # pysqlite must not emit its own BEGIN
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            _ensure_wal(cursor)
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(_BEGIN_OPTION, "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {mode}")


def _ensure_wal(cursor: sqlite3.Cursor) -> None:
    """Switch the database file to WAL (it stays so), waiting out other connections doing the same.

    On a new file several processes race to switch it: the switch needs the exclusive lock, and two
    connections upgrading their shared locks at once make SQLite answer "database is locked" to
    one of them at once, without the busy handler (it would deadlock). So: read the mode first (a
    file already in WAL costs nothing more), and retry the switch with jittered backoff until the
    busy timeout.
    """
    if cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
        return
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    delay = 0.002
    # Racing processes must not retry in step: each scales its backoff by a factor of its own
    # (from the pid; this is timing only, so no seeded generator is needed).
    spread = 1 + (os.getpid() % 1009) / 1009
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode = WAL").fetchone()[0] == "wal":
                return
            problem = "the journal mode did not change"
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            problem = str(exc)
        if time.monotonic() > deadline:
            raise StorageError(f"cannot switch the SQLite database to WAL mode: {problem}")
        time.sleep(delay * spread)
        delay = min(delay * 2, 0.1)


def _new_engine(url: URL) -> Engine:
    if url.get_backend_name() == "sqlite":
        engine = sa.create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})
        sqlite_begin_immediate(engine)
        return engine
    from .._settings import get_settings

    settings = get_settings()
    return sa.create_engine(
        url,
        pool_pre_ping=True,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        pool_recycle=3600,
        connect_args=postgres_connect_args(url),
    )


def postgres_connect_args(url: str | URL) -> dict[str, Any]:
    """psycopg's connection arguments from the settings (hpo's engines and Optuna's storage).

    Besides the pool's settings: TCP keepalives and a 30 s TCP user timeout, so that a query on a
    connection whose network died without a reset (a host cut off) fails in about half a minute,
    not after the kernel's ~15 minutes of retransmissions. A parameter the URL's query gives
    (``?tcp_user_timeout=3000``) is the URL's: connection arguments would override it.
    """
    from .._settings import get_settings

    settings = get_settings()
    connect: dict[str, Any] = {
        "connect_timeout": 10,
        "application_name": settings.db_application_name,
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
        "tcp_user_timeout": 30_000,
    }
    if not settings.db_prepared_statements:
        connect["prepare_threshold"] = None  # never prepare on the server (PgBouncer, see Settings)
    given = make_url(url).query
    return {k: v for k, v in connect.items() if k not in given}


def _key(url: str | URL) -> str:
    """The cache key of a URL: its text as given (a URL object is rendered with its password)."""
    return url if isinstance(url, str) else url.render_as_string(hide_password=False)


def create_engine(url: str | URL) -> Engine:
    """The process's engine for ``url``, created and configured on first use.

    Engines are cached per URL per process; a forked child never reuses its parent's engines or
    connections (the cache is dropped after ``fork``).

    Args:
        url: SQLAlchemy URL: ``sqlite:///FILE`` or ``postgresql+psycopg://...``.

    Returns:
        The engine.

    Raises:
        InvalidURLError: A malformed URL, in-memory SQLite, or a database other than SQLite and
            PostgreSQL (see :func:`hpo._urls.check_database_url`).
    """
    return _engines.get_or_create(_key(url), lambda: _new_engine(make_url(_check_url(url))))


def read_engine(engine: Engine) -> Engine:
    """``engine`` for read-only work: SQLite transactions begin deferred (no write lock)."""
    if engine.dialect.name != "sqlite":
        return engine
    return engine.execution_options(**{_BEGIN_OPTION: "DEFERRED"})


def dispose_engine(url: str | URL) -> None:
    """Close and forget this process's engine for ``url`` (the next use creates a new one)."""
    _engines.dispose(_key(url))


def dispose_engines() -> None:
    """Close every cached engine of this process (tests, or before exiting)."""
    _engines.dispose_all()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "a+b") as handle:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            import msvcrt
            import time

            while True:
                try:
                    msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
                    break
                except OSError:
                    time.sleep(0.01)
            try:
                yield
            finally:
                handle.seek(0)
                msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]
            return
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def advisory_lock(conn: Connection, key: int, lock_class: int = LOCK_CLASS) -> None:
    """Serialise a write transaction with every other holder of the same lock, until it ends.

    PostgreSQL: the transaction-level advisory lock that :func:`exclusive` also takes. SQLite:
    nothing to do, its ``BEGIN IMMEDIATE`` transactions already run one at a time.

    Args:
        conn: A connection inside a write transaction.
        key: Object key, e.g. a study id.
        lock_class: The kind of lock (:data:`LOCK_CLASS` is :func:`exclusive`'s).
    """
    if conn.dialect.name != "sqlite":
        conn.execute(sa.select(advisory_lock_expr(key, lock_class)))


def try_advisory_lock(conn: Connection, key: int, lock_class: int = LOCK_CLASS) -> bool:
    """:func:`advisory_lock` if no other transaction holds it, else False at once (no wait).

    SQLite: True, its ``BEGIN IMMEDIATE`` transaction holds the database already.
    """
    if conn.dialect.name == "sqlite":
        return True
    key_, class_ = sa.cast(key, sa.Integer), sa.cast(lock_class, sa.Integer)
    return bool(conn.execute(sa.select(sa.func.pg_try_advisory_xact_lock(class_, key_))).scalar_one())


def advisory_lock_expr(key: Any, lock_class: int = LOCK_CLASS) -> sa.ColumnElement[Any]:
    """PostgreSQL's ``pg_advisory_xact_lock(lock_class, key)``, to use inside a statement.

    Args:
        key: An integer or an integer column (the lock is taken for each row's value).
        lock_class: The kind of lock.
    """
    return sa.func.pg_advisory_xact_lock(sa.cast(lock_class, sa.Integer), sa.cast(key, sa.Integer))


@contextlib.contextmanager
def exclusive(engine: Engine, name: str, key: int) -> Iterator[Connection | None]:
    """Hold a lock shared by every process using the database, for work done on other connections.

    Used where hpo's work spans a second connection (Optuna's storage): mirroring a study's trials
    and creating Optuna's tables. PostgreSQL: a transaction-level advisory lock on ``(LOCK_CLASS,
    key)``; the open transaction is yielded, and committed on exit. SQLite (one host by nature): an
    exclusive ``flock`` on a file next to the database, named after ``name``; ``None`` is yielded,
    because a SQLite transaction must not stay open while another connection writes.

    Args:
        engine: The database's engine.
        name: Lock name (SQLite lock file suffix).
        key: Object key (PostgreSQL advisory lock second key), e.g. a study id.

    Yields:
        The transaction holding the lock (PostgreSQL) or ``None`` (SQLite).
    """
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        assert database  # in-memory databases are refused by create_engine
        with _file_lock(Path(f"{database}.hpo-{name}.lock")):
            yield None
        return
    with engine.begin() as conn:
        advisory_lock(conn, key)
        yield conn
