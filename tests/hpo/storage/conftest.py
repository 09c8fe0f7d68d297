"""Fixtures of the storage tests: real SQLite files and the real PostgreSQL.

PostgreSQL tests either use the shared test database (upgraded once; every test uses its own
uniquely named studies, deletes them afterwards, and never calls a method across all studies), or
a fresh database created for the test and dropped after it (migration tests).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from optuna.distributions import CategoricalDistribution, FloatDistribution

from hpo.storage import NewTrial, StageDraft, Storage, StudyRow, dispose_engines, encode_space

SPACE = {
    "lr": FloatDistribution(1e-6, 1e-2, log=True),
    "weight_decay": FloatDistribution(1e-8, 1e-4, log=True),
    "activation": CategoricalDistribution(["relu", "tanh", "sigmoid"]),
}


def draft(index: int, n: int, first: int, space: dict[str, Any] | None = None, epochs: int = 2) -> StageDraft:
    """A stage of ``n`` trials numbered from ``first``, with deterministic parameters."""
    acts = ["relu", "tanh", "sigmoid"]
    trials = [
        NewTrial(
            first + i,
            {"lr": 10 ** -(2 + (first + i) % 4), "weight_decay": 1e-6, "activation": acts[(first + i) % 3]},
            1000 + first + i,
        )
        for i in range(n)
    ]
    return StageDraft(index, n, epochs, encode_space(space or SPACE), trials)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite file (not upgraded)."""
    return f"sqlite:///{tmp_path / 'hpo.db'}"


@pytest.fixture
def fresh_pg_url(postgres_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database on the test server, dropped after the test."""
    name = f"hpo_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.engine.make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        dispose_engines()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request: pytest.FixtureRequest) -> str:
    """A fresh empty database: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("fresh_pg_url"))


@pytest.fixture(scope="session")
def shared_pg_storage(postgres_url: str) -> Storage:
    """The shared PostgreSQL test database, upgraded once per session."""
    storage = Storage(postgres_url)
    storage.upgrade()
    return storage


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    """An upgraded storage: a fresh SQLite file, or the shared PostgreSQL database."""
    if request.param == "sqlite":
        storage = Storage(f"sqlite:///{tmp_path / 'hpo.db'}")
        storage.upgrade()
        return storage
    return request.getfixturevalue("shared_pg_storage")  # type: ignore[no-any-return]


@pytest.fixture
def make_study(storage: Storage) -> Iterator[Callable[..., StudyRow]]:
    """Create uniquely named studies on ``storage``; they are deleted after the test."""
    names: list[str] = []

    def make(
        n: int = 4,
        direction: str = "maximize",
        space: dict[str, Any] | None = None,
        spec_json: str | None = None,
        **kwargs: Any,
    ) -> StudyRow:
        name = f"t-{uuid.uuid4().hex[:10]}"
        names.append(name)
        study, created = storage.create_study(
            name, spec_json or f'{{"n": {n}}}', f"hash-{n}", direction, draft(0, n, 0, space), **kwargs
        )
        assert created
        return study

    yield make
    for name in names:
        if storage.find_study(name) is not None:
            storage.delete_study(name)
