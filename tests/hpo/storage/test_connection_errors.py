"""A PostgreSQL that cannot be used (missing database or role, nothing listening) is one line."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from hpo.storage import Storage, StorageError

pytestmark = pytest.mark.services

SECRET = "s3cr3t-pw"


@pytest.mark.parametrize("operation", ["check_schema", "upgrade"])
@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"database": "no_such_db"}, 'database "no_such_db" does not exist'),
        ({"username": "no_such_role"}, 'role "no_such_role" does not exist'),
        ({"port": 1}, "Connection refused"),
    ],
)
def test_an_unusable_postgresql_is_one_line_storage_error(
    postgres_url: str, changes: dict[str, object], expected: str, operation: str
) -> None:
    url = sa.engine.make_url(postgres_url).set(password=SECRET, **changes)  # type: ignore[arg-type]
    storage = Storage(url.render_as_string(hide_password=False))
    with pytest.raises(StorageError) as info:
        getattr(storage, operation)()
    message = str(info.value)
    assert expected in message and "\n" not in message and SECRET not in message, message
    assert "initialised" not in message  # the database is missing, not its tables
