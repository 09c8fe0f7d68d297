"""What every part of :class:`~hpo.storage.Storage` shares: its tables, and its transactions.

:class:`StorageBase` holds the URL and opens the transactions, mapping database errors to
:class:`StorageError` in one place. The parts of ``Storage`` build on it, each in its own module:
the reads (:mod:`._queries`), the Optuna view (:mod:`._view`), the trial state machine
(:mod:`._trial_states`) and the study lifecycle (:mod:`._lifecycle`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ._engine import create_engine, read_engine, redact
from ._errors import StorageError, database_error_text
from ._models import FINISHED_STATES, Stage, Study, Trial, TrialState

__all__ = ["DEFAULT_MAX_ATTEMPTS", "StorageBase"]

DEFAULT_MAX_ATTEMPTS = 3
"""Claims after which a trial whose worker keeps disappearing is failed."""

S = cast(sa.Table, Study.__table__)
G = cast(sa.Table, Stage.__table__)
T = cast(sa.Table, Trial.__table__)

UNFINISHED = (TrialState.PENDING.value, TrialState.RUNNING.value)
FINISHED = tuple(s.value for s in FINISHED_STATES)


class RollbackError(Exception):
    """Raised inside a write transaction to roll it back quietly."""


class StorageBase:
    """The database a :class:`~hpo.storage.Storage` works on, and its transactions.

    Attributes:
        url: The checked database URL.
    """

    url: str

    @property
    def engine(self) -> Engine:
        """This process's engine for the URL."""
        return create_engine(self.url)

    @property
    def is_sqlite(self) -> bool:
        """Whether the database is SQLite."""
        return sa.engine.make_url(self.url).get_backend_name() == "sqlite"

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sa.exc.IntegrityError:
            raise
        except sa.exc.SQLAlchemyError as exc:
            text = database_error_text(exc, self.url)
            hint = ""
            # A missing table, not a missing database or role (whose text also says "does not exist").
            if "no such table" in text or ("relation" in text and "does not exist" in text):
                hint = " (is the database initialised? run Storage.upgrade())"
            raise StorageError(f"database {redact(self.url)}: {text}{hint}") from exc

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite), committed on success."""
        with self._errors(), self.engine.begin() as conn:
            yield conn

    @contextlib.contextmanager
    def _statements(self) -> Iterator[Connection]:
        """A connection on which each statement is its own transaction (PostgreSQL's autocommit):
        for writes of one statement, which then cost one round trip, not three (``BEGIN``, the
        statement, ``COMMIT``), and for a read that must see what committed before it. SQLite:
        a write transaction (:meth:`_write`), in which the statements run one at a time anyway."""
        if self.is_sqlite:
            with self._write() as conn:
                yield conn
            return
        # The pool puts the connection back to its default isolation level when it is returned.
        with self._errors(), self.engine.connect() as conn:
            yield conn.execution_options(isolation_level="AUTOCOMMIT")

    @contextlib.contextmanager
    def _read(self) -> Iterator[Connection]:
        """A read-only transaction (deferred on SQLite: it never waits for writers)."""
        with self._errors(), read_engine(self.engine).connect() as conn:
            yield conn

    @contextlib.contextmanager
    def _locked_tx(self, locked: Connection | None) -> Iterator[Connection]:
        """The transaction holding an :func:`exclusive` lock (PostgreSQL), else a new write transaction."""
        if locked is not None:
            yield locked
        else:
            with self._write() as conn:
                yield conn
