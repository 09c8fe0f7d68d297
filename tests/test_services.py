"""The machine's services answer, so the integration tests that need them can run."""

from __future__ import annotations

import pytest


@pytest.mark.services
def test_redis_round_trip(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    client.set("hpo:test:ping", "pong", ex=10)
    assert client.get("hpo:test:ping") == b"pong"


@pytest.mark.services
def test_postgres_round_trip(postgres_url: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(postgres_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("select 1 + 1")).scalar_one() == 2
    engine.dispose()
