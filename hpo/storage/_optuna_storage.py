"""The process's Optuna ``RDBStorage`` per database URL, and Optuna's own schema.

hpo writes Optuna's rows on its own connections (:mod:`hpo.storage._optuna_mirror`); this storage
serves the reads that go through Optuna's API, and samplers and pruners may share it. Optuna is
imported on first use only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._process_cache import ProcessCache
from ._engine import BUSY_TIMEOUT_S, is_sqlite, postgres_connect_args, sqlite_begin_immediate

if TYPE_CHECKING:
    from optuna.storages import RDBStorage

__all__ = [
    "dispose_optuna_storage",
    "dispose_optuna_storages",
    "find_optuna_study",
    "optuna_storage",
    "upgrade_optuna_schema",
]

_storages: ProcessCache[str, RDBStorage] = ProcessCache(
    close=lambda storage: storage.engine.dispose(),
    # The parent's connections belong to the parent: a forked child drops them without closing.
    abandon=lambda storage: storage.engine.dispose(close=False),
)


def _engine_kwargs(url: str) -> dict[str, Any]:
    if is_sqlite(url):
        return {"connect_args": {"timeout": BUSY_TIMEOUT_S}}
    return {
        "pool_pre_ping": True,
        "pool_size": 2,
        "max_overflow": 8,
        "connect_args": postgres_connect_args(url),
    }


def _configure(storage: RDBStorage) -> RDBStorage:
    if storage.engine.dialect.name == "sqlite":
        # Optuna's transactions read, then write: with a deferred BEGIN, a commit by another
        # process in between fails at once with "database is locked" (no busy wait).
        sqlite_begin_immediate(storage.engine)
        storage.engine.dispose()
    return storage


def optuna_storage(url: str) -> RDBStorage:
    """The process's ``optuna.storages.RDBStorage`` for ``url`` (created on first use).

    On SQLite its engine gets the same WAL / busy timeout / ``BEGIN IMMEDIATE`` setup as hpo's. It
    is dropped in forked children. Samplers and pruners may share it (``optuna.load_study(...,
    storage=optuna_storage(url))``).

    Args:
        url: The database URL (hpo's tables and Optuna's are in the same database).

    Returns:
        The storage.
    """

    def create() -> RDBStorage:
        from optuna.storages import RDBStorage

        return _configure(RDBStorage(url, engine_kwargs=_engine_kwargs(url)))

    return _storages.get_or_create(url, create)


def dispose_optuna_storage(url: str) -> None:
    """Close and forget this process's Optuna storage for ``url``."""
    _storages.dispose(url)


def dispose_optuna_storages() -> None:
    """Close the engines of this process's cached Optuna storages and forget them."""
    _storages.dispose_all()


def upgrade_optuna_schema(url: str) -> str:
    """Create Optuna's tables, or upgrade them with Optuna's own migrations (``alembic_version``).

    Returns:
        The version of Optuna's schema now (e.g. ``v3.2.0.a``).
    """
    from optuna.storages import RDBStorage

    storage = RDBStorage(url, engine_kwargs=_engine_kwargs(url), skip_compatibility_check=True)
    try:
        if storage.get_current_version() != storage.get_head_version():
            storage.upgrade()
        return storage.get_current_version()
    finally:
        storage.engine.dispose()


def find_optuna_study(url: str, name: str) -> int | None:
    """Id of the Optuna study called ``name``, or ``None``."""
    try:
        return optuna_storage(url).get_study_id_from_name(name)
    except KeyError:
        return None
