"""Shared fixtures: the real Redis and PostgreSQL of the machine.

Without them, tests that need them skip, unless ``HPO_REQUIRE_SERVICES=1`` (set by CI), which
turns a missing service into a failure: in CI they must run, never skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

# BLAS as the test workers run it (tests/workers/conftest.py: one thread, the inherited kernels),
# set before NumPy is first imported: results computed here are compared bit for bit with theirs
# (invariant I3), and two BLAS threads or other kernels round a large product differently.
os.environ.setdefault("HPO_BLAS_CORETYPE", "inherit")
from hpo._blas import configure_blas  # stdlib only: NumPy is not imported yet

configure_blas(1)

import pytest  # noqa: E402

from tests.services import unavailable  # noqa: E402

REDIS_URL = os.environ.get("HPO_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
POSTGRES_URL = os.environ.get("HPO_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _unavailable(what: str, exc: BaseException) -> None:
    unavailable(f"{what} is not reachable: {exc}")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of a Redis database reserved for tests (db 15), flushed at the start of the session."""
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        client.ping()
        client.flushdb()
        client.close()
    except (redis.RedisError, OSError) as exc:
        _unavailable("Redis", exc)
    return REDIS_URL


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """SQLAlchemy URL of the local PostgreSQL test database."""
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
    except (sa.exc.SQLAlchemyError, OSError) as exc:
        _unavailable("PostgreSQL", exc)
    yield POSTGRES_URL
