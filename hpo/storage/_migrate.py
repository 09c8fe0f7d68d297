"""Running hpo's Alembic migrations from code, next to Optuna's tables in the same database.

hpo's Alembic environment lives in the top-level ``migrations/`` directory of the repository (its
script location). It records its revision in ``hpo_alembic_version``, never in the default
``alembic_version`` table, which belongs to Optuna; and autogenerate only ever compares ``hpo_*``
tables (:func:`include_name`, :func:`include_object`), so Optuna's tables never show up as drift.

Where the scripts are found (:func:`script_location`): ``$HPO_MIGRATIONS_DIR`` if set; else
``hpo/storage/_migrations``, a symlink to ``../../migrations`` in the repository that the wheel
and sdist builds copy as package data (so a non-editable install ships them); else ``migrations/``
next to the ``hpo`` package (an editable install, or a checkout without symlinks).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ._engine import LOCK_CLASS, _check_url, create_engine, exclusive, read_engine, redact
from ._errors import StorageError, database_error_text

__all__ = [
    "OPTUNA_VERSION_TABLE",
    "TABLE_PREFIX",
    "VERSION_TABLE",
    "UpgradeResult",
    "alembic_config",
    "current_revision",
    "expected_revision",
    "head_revision",
    "include_name",
    "include_object",
    "script_location",
    "upgrade",
]

VERSION_TABLE = "hpo_alembic_version"
OPTUNA_VERSION_TABLE = "alembic_version"
"""Where Optuna's own migrations record the version of its tables."""
TABLE_PREFIX = "hpo_"
_SCHEMA_LOCK_KEY = 0


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Alembic ``include_name`` hook: reflect only ``hpo_*`` tables (never Optuna's)."""
    if type_ == "table":
        return bool(name) and name.startswith(TABLE_PREFIX) and name != VERSION_TABLE  # type: ignore[union-attr]
    return True


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Alembic ``include_object`` hook: compare only ``hpo_*`` tables and what belongs to them."""
    if type_ == "table":
        return bool(name) and name.startswith(TABLE_PREFIX) and name != VERSION_TABLE  # type: ignore[union-attr]
    table = getattr(obj, "table", None)
    if table is not None:
        return bool(table.name.startswith(TABLE_PREFIX))
    return True


def script_location() -> Path:
    """The directory of hpo's Alembic environment (``env.py``, ``versions/``).

    Raises:
        StorageError: The migrations are not installed.
    """
    here = Path(__file__).parent
    candidates = []
    if os.environ.get("HPO_MIGRATIONS_DIR"):
        candidates.append(Path(os.environ["HPO_MIGRATIONS_DIR"]))
    candidates += [here / "_migrations", here.resolve().parents[1] / "migrations"]
    for candidate in candidates:
        if (candidate / "env.py").is_file() and (candidate / "versions").is_dir():
            return candidate
    raise StorageError(
        "hpo's database migrations were not found (looked in "
        + ", ".join(str(c) for c in candidates)
        + "); reinstall hpo or set HPO_MIGRATIONS_DIR"
    )


def alembic_config(url: str, connection: Connection | None = None) -> Any:
    """An Alembic ``Config`` for hpo's migrations, built in code (no ``alembic.ini`` needed).

    Args:
        url: The database URL.
        connection: A connection (in a transaction) for ``env.py`` to use instead of its own.

    Returns:
        The ``alembic.config.Config``.
    """
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(script_location()))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


@functools.cache
def expected_revision() -> str:
    """The newest revision of hpo's migrations, from their file names (``NNNN_what.py``, revision
    ``NNNN``; a test checks the names against Alembic's :func:`head_revision`).

    Read from the names, not by Alembic: every command checks the schema, and importing Alembic
    would add ~0.1 s to each. A new migration is one new file, with no constant to bump.
    """
    names = [p.name for p in (script_location() / "versions").glob("[0-9][0-9][0-9][0-9]_*.py")]
    if not names:
        raise StorageError(f"hpo's database migrations in {script_location()} have no versions")
    return max(names)[:4]


def head_revision() -> str:
    """The newest revision of hpo's migrations, read from the scripts by Alembic."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(script_location())).get_current_head()
    assert head is not None
    return head


def current_revision(url: str) -> str | None:
    """The revision of hpo's tables in the database at ``url`` (``None``: not created yet).

    Read with plain SQL from Alembic's version table: every command checks it, and importing
    Alembic would add ~0.1 s to each.
    """
    with create_engine(url).connect() as conn:
        return _stored_revision(conn, VERSION_TABLE, url)


def _stored_revision(conn: Connection, table_name: str, url: str) -> str | None:
    """The revision recorded in an Alembic version table (``None``: no table, or no row)."""
    if not sa.inspect(conn).has_table(table_name):
        return None
    table = sa.table(table_name, sa.column("version_num"))
    revisions = conn.execute(sa.select(table.c.version_num)).scalars().all()
    if len(revisions) > 1:
        raise StorageError(f"database {redact(url)} has several revisions {revisions}: repair {table_name}")
    return revisions[0] if revisions else None


@dataclass(frozen=True)
class UpgradeResult:
    """What :func:`upgrade` did to a database's tables.

    Attributes:
        url: The database, with any password hidden.
        hpo_before: hpo's revision before (``None``: its tables did not exist).
        hpo_after: hpo's revision after.
        optuna_before: The version of Optuna's schema before (``None``: its tables did not exist,
            or were not asked for).
        optuna_after: The version of Optuna's schema after (``None``: not asked for).
    """

    url: str
    hpo_before: str | None
    hpo_after: str
    optuna_before: str | None = None
    optuna_after: str | None = None

    @property
    def changed(self) -> bool:
        """Whether any table was created or migrated."""
        return self.hpo_before != self.hpo_after or self.optuna_before != self.optuna_after

    @property
    def message(self) -> str:
        """One line saying what was done, e.g. ``created hpo's tables (revision 0004) and
        Optuna's tables (Optuna schema v3.2.0.a) in sqlite:///hpo.db``."""
        parts = [("hpo", "revision", self.hpo_before, self.hpo_after)]
        if self.optuna_after is not None:
            parts.append(("Optuna", "Optuna schema", self.optuna_before, self.optuna_after))
        done: list[tuple[str, str]] = []  # (verb, what)
        kept: list[tuple[str, str]] = []  # (whose tables, version)
        for owner, label, before, after in parts:
            if before is None:
                done.append(("created", f"{owner}'s tables ({label} {after})"))
            elif before != after:
                done.append(("upgraded", f"{owner}'s tables from {before} to {after}"))
            else:
                kept.append((owner, after))
        if not done:
            versions = ", ".join(f"{owner} {version}" for owner, version in kept)
            return f"{self.url} is already at the latest schema ({versions})"
        (verb, what), *more = done
        # "created hpo's tables (...) and Optuna's tables (...)": a verb said once is not repeated.
        text = f"{verb} {what}" + "".join(
            f" and {other}" if again == verb else f" and {again} {other}" for again, other in more
        )
        already = "".join(f" ({owner}'s tables already at {version})" for owner, version in kept)
        return f"{text} in {self.url}{already}"

    def __str__(self) -> str:
        return self.message


def upgrade(url: str, revision: str = "head", *, optuna: bool = True) -> UpgradeResult:
    """Bring hpo's tables (and Optuna's) in the database at ``url`` up to date.

    Safe to call from several processes at once: on PostgreSQL the migration runs under an advisory
    lock, on SQLite under ``BEGIN IMMEDIATE``; a second caller finds the tables at head. Then
    Optuna's tables are created, or upgraded with Optuna's own migrations, under a lock.

    Args:
        url: The database URL.
        revision: Target revision of hpo's migrations.
        optuna: Also create/upgrade Optuna's tables.

    Returns:
        The revisions before and after (:attr:`UpgradeResult.message` says it in one line).

    Raises:
        StorageError: The database cannot be reached or migrated.
    """
    from alembic import command

    url = _check_url(url)  # Alembic and Optuna get the normalized URL too
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(
                    sa.select(
                        sa.func.pg_advisory_xact_lock(
                            sa.cast(LOCK_CLASS, sa.Integer), sa.cast(_SCHEMA_LOCK_KEY, sa.Integer)
                        )
                    )
                )
            hpo_before = _stored_revision(conn, VERSION_TABLE, url)
            command.upgrade(alembic_config(url, conn), revision)
            hpo_after = _stored_revision(conn, VERSION_TABLE, url)
        assert hpo_after is not None  # Alembic has just written it
        result = UpgradeResult(redact(url), hpo_before, hpo_after)
        if optuna:
            from ._optuna_storage import upgrade_optuna_schema

            with exclusive(engine, "schema", _SCHEMA_LOCK_KEY):
                with read_engine(engine).connect() as conn:
                    optuna_before = _stored_revision(conn, OPTUNA_VERSION_TABLE, url)
                optuna_after = upgrade_optuna_schema(url)
            result = replace(result, optuna_before=optuna_before, optuna_after=optuna_after)
    except sa.exc.SQLAlchemyError as exc:
        raise StorageError(
            f"cannot migrate the database {redact(url)}: {database_error_text(exc, url)}"
        ) from exc
    return result
