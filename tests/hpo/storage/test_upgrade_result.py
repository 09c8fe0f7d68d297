"""``upgrade`` says what it did: created, migrated or already at head, for hpo's and Optuna's tables.

And a PostgreSQL database or role that does not exist is reported with the command that creates it.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command
from optuna.storages import RDBStorage

from hpo.storage import Storage, StorageError, UpgradeResult, create_engine, upgrade
from hpo.storage._engine import redact
from hpo.storage._errors import create_hint
from hpo.storage._migrate import alembic_config, expected_revision

HEAD = expected_revision()
SECRET = "s3cr3t-pw"


def _optuna_head(url: str) -> str:
    """The version Optuna's own code expects (its storage reads it from its migration scripts)."""
    storage = RDBStorage(url, skip_table_creation=True, skip_compatibility_check=True)
    try:
        return storage.get_head_version()
    finally:
        storage.engine.dispose()


def _optuna_stored(url: str) -> str:
    with create_engine(url).connect() as conn:
        return str(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one())


def test_an_empty_database_is_created_then_found_at_head(fresh_url: str) -> None:
    shown = redact(fresh_url)
    created = Storage(fresh_url).upgrade()
    optuna = _optuna_stored(fresh_url)
    assert optuna == _optuna_head(fresh_url)
    assert created == UpgradeResult(shown, None, HEAD, None, optuna)
    assert created.changed
    assert created.message == (
        f"created hpo's tables (revision {HEAD}) and Optuna's tables (Optuna schema {optuna}) in {shown}"
    )
    again = Storage(fresh_url).upgrade()
    assert again == UpgradeResult(shown, HEAD, HEAD, optuna, optuna)
    assert not again.changed
    assert again.message == f"{shown} is already at the latest schema (hpo {HEAD}, Optuna {optuna})"


def test_older_tables_are_upgraded(fresh_url: str) -> None:
    shown = redact(fresh_url)
    assert (
        upgrade(fresh_url, "0003", optuna=False).message == f"created hpo's tables (revision 0003) in {shown}"
    )
    result = upgrade(fresh_url)
    optuna = _optuna_stored(fresh_url)
    assert (result.hpo_before, result.hpo_after, result.optuna_before) == ("0003", HEAD, None)
    assert result.message == (
        f"upgraded hpo's tables from 0003 to {HEAD} and created Optuna's tables (Optuna schema {optuna}) "
        f"in {shown}"
    )
    command.downgrade(alembic_config(fresh_url), "0003")
    assert Storage(fresh_url).upgrade().message == (
        f"upgraded hpo's tables from 0003 to {HEAD} in {shown} (Optuna's tables already at {optuna})"
    )


def test_hpo_tables_next_to_optuna_ones(fresh_url: str) -> None:
    import optuna

    optuna.create_study(study_name="theirs", storage=fresh_url)
    version = _optuna_stored(fresh_url)
    assert Storage(fresh_url).upgrade().message == (
        f"created hpo's tables (revision {HEAD}) in {redact(fresh_url)} "
        f"(Optuna's tables already at {version})"
    )


def test_the_password_is_never_shown(fresh_pg_url: str) -> None:
    url = sa.engine.make_url(fresh_pg_url).set(password=SECRET).render_as_string(hide_password=False)
    message = Storage(url).upgrade().message  # the local server trusts any password
    assert SECRET not in message and ":***@" in message and message.startswith("created hpo's tables")


@pytest.mark.services
@pytest.mark.parametrize("operation", ["check_schema", "upgrade"])
@pytest.mark.parametrize(
    ("changes", "hint"),
    [
        (
            {"database": "no_such_db_xyz"},
            "; create it with: createdb -h {host} -p {port} -U {user} no_such_db_xyz",
        ),
        (
            {"username": "no_such_role"},
            "; a superuser can create it, e.g.: "
            "createuser -h {host} -p {port} -U postgres --pwprompt no_such_role",
        ),
    ],
)
def test_a_missing_database_or_role_gets_the_command_that_creates_it(
    postgres_url: str, changes: dict[str, str], hint: str, operation: str
) -> None:
    url = sa.engine.make_url(postgres_url).set(password=SECRET, **changes)  # type: ignore[arg-type]
    with pytest.raises(StorageError) as info:
        getattr(Storage(url.render_as_string(hide_password=False)), operation)()
    message = str(info.value)
    assert message.endswith(hint.format(host=url.host, port=url.port or 5432, user=url.username)), message
    assert "\n" not in message and SECRET not in message


def test_hints_name_the_socket_and_quote_odd_names() -> None:
    text = 'connection failed: FATAL:  database "my db" does not exist'
    assert create_hint(text, "postgresql+psycopg://me@/my%20db?host=/run/postgresql") == (
        "; create it with: createdb -h /run/postgresql -U me 'my db'"
    )
    assert create_hint('FATAL:  role "r" does not exist', "postgresql+psycopg://r@db.example") == (
        "; a superuser can create it, e.g.: createuser -h db.example -U postgres r"
    )
    # A missing table is not a missing database: no hint.
    assert create_hint('relation "hpo_studies" does not exist', "postgresql+psycopg://me@h/db") == ""
