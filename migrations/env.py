"""Alembic environment of hpo's ``hpo_*`` tables.

Run from code by :func:`hpo.storage.upgrade` (which passes a connection in
``config.attributes["connection"]``), or from the command line::

    HPO_DATABASE_URL=postgresql+psycopg://... alembic -c migrations/alembic.ini upgrade head

The revision is kept in ``hpo_alembic_version`` (Optuna owns ``alembic_version`` in the same
database), and autogenerate compares only ``hpo_*`` tables.
"""

from __future__ import annotations

from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy.engine import Connection

from hpo.storage._migrate import VERSION_TABLE, include_name, include_object
from hpo.storage._models import metadata

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

_OPTIONS: dict[str, Any] = {
    "target_metadata": metadata,
    "version_table": VERSION_TABLE,
    "include_name": include_name,
    "include_object": include_object,
    "compare_type": True,
    "render_as_batch": True,  # SQLite cannot ALTER most things; batch mode copies the table
}


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from hpo._settings import get_settings

    return get_settings().database_url


def _run(connection: Connection) -> None:
    context.configure(connection=connection, **_OPTIONS)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    """Emit the SQL of the migrations (``alembic upgrade --sql``)."""
    context.configure(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"}, **_OPTIONS)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations on the given connection, or on one of hpo's engine."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from hpo.storage._engine import create_engine

    with create_engine(_url()).begin() as connection:
        _run(connection)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
