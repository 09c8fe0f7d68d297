"""``Storage``: the study / stage / trial state machine on SQLite or PostgreSQL.

``Storage`` is the facade; its parts live in modules of their own, each a layer on the one below:

* :mod:`._base`: the URL, the transactions, and the mapping of database errors;
* :mod:`._queries`: reads of studies, stages, trials, best trials, counts and progress;
* :mod:`._view`: the Optuna view (each study's Optuna study, its mirror and its repair);
* :mod:`._trial_states`: the trial state machine (claim, heartbeat, finish, release, requeue);
* :mod:`._lifecycle`: the study lifecycle (create, advance, add trials, stop, resume, delete).

Every transition is a compare-and-set: a conditional ``UPDATE`` whose returned rows say whether it
happened. On SQLite every write transaction begins with ``BEGIN IMMEDIATE`` (see
:mod:`hpo.storage._engine`). Every time written or compared (leases, heartbeats, enqueue times,
created/started/finished) is the database's clock, computed in the statement
(:func:`hpo.storage._clock.db_now`): hosts whose clocks disagree judge leases alike.
"""

from __future__ import annotations

import sqlalchemy as sa

from . import _optuna_mirror as optuna_mirror
from ._base import DEFAULT_MAX_ATTEMPTS
from ._engine import _check_url, dispose_engine, redact
from ._engine import dispose_engines as _dispose_hpo_engines
from ._errors import StorageError
from ._lifecycle import Lifecycle
from ._migrate import UpgradeResult, current_revision, expected_revision
from ._migrate import upgrade as _upgrade

__all__ = ["DEFAULT_MAX_ATTEMPTS", "Storage", "dispose_engines"]


def dispose_engines() -> None:
    """Close this process's engines: hpo's and those of the cached Optuna storages."""
    _dispose_hpo_engines()
    optuna_mirror.dispose_optuna_storages()


class Storage(Lifecycle):
    """hpo's tables in one database: studies, their stages, and the trial state machine.

    A ``Storage`` holds only its URL: it is cheap, picklable, and safe to use in forked or spawned
    children (engines are per process, see :func:`hpo.storage.create_engine`). Every method runs
    its own short transaction and returns plain frozen rows.

    Args:
        url: ``sqlite:///FILE`` or ``postgresql+psycopg://USER@HOST:PORT/DB`` (``postgresql://``
            is read as the latter, see :func:`hpo._urls.check_database_url`).

    Raises:
        InvalidURLError: The URL is malformed, or names an in-memory SQLite database or an
            unsupported database (bad input: nothing is opened or written).
    """

    def __init__(self, url: str) -> None:
        self.url = _check_url(url)

    def __repr__(self) -> str:
        return f"Storage({redact(self.url)!r})"

    # -- schema ------------------------------------------------------------------------------

    def upgrade(self) -> UpgradeResult:
        """Create or upgrade hpo's tables (Alembic, ``hpo_alembic_version``) and Optuna's.

        Returns:
            The revisions before and after (:attr:`UpgradeResult.message` says it in one line).
        """
        return _upgrade(self.url)

    def check_schema(self) -> None:
        """Check, without changing anything, that the database has been upgraded.

        Raises:
            StorageError: hpo's tables are missing or not at the newest revision, or Optuna's tables
                are missing.
        """
        with self._errors():
            head = expected_revision()
            revision = current_revision(self.url)
            has_optuna = sa.inspect(self.engine).has_table("studies")
        if revision != head:
            state = "not initialised" if revision is None else f"at revision {revision}, not {head}"
            raise StorageError(f"database {redact(self.url)} is {state}: upgrade it (hpo db upgrade)")
        if not has_optuna:
            raise StorageError(
                f"database {redact(self.url)} has no Optuna tables: upgrade it (hpo db upgrade)"
            )

    def connect(self) -> None:
        """Open this process's connection to the database now (one round trip on it), so that
        the first statement that needs it does not pay for opening it: ~125 ms for the engine,
        the connection and the dialect's first look at the server, against ~1 ms for a claim.

        Raises:
            StorageError: The database cannot be reached.
        """
        with self._read() as conn:
            conn.execute(sa.text("SELECT 1"))

    def dispose(self) -> None:
        """Close this process's connections to the database (hpo's and Optuna's engines).

        Call before starting worker processes; the next use opens new connections.
        """
        dispose_engine(self.url)
        optuna_mirror.dispose_optuna_storage(self.url)
