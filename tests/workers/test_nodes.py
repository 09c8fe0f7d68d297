"""Every worker is its own node (issue 10, item 4): two `hpo worker` processes on one host are
two nodes in `celery inspect` and flower, each names its pool processes (the ids in
`hpo_trials.worker`), and `--name` sets the name.

Real Redis, real PostgreSQL, real `hpo worker` processes (tests/workers/conftest.py).
"""

from __future__ import annotations

import socket
import warnings
from typing import Any

import pytest
from celery.exceptions import DuplicateNodenameWarning

from hpo import Settings
from workers.app import create_app

from .conftest import Worker, Workers, hpo, wait_for

pytestmark = pytest.mark.services

HOST = socket.gethostname()
# What Celery and kombu say when two workers share a node name.
DUPLICATE_WORDS = ("unique node", "multiple replies", "already using this process mailbox")


def ping(workers: Workers, expected: int) -> tuple[dict[str, Any], list[warnings.WarningMessage]]:
    """`celery inspect ping` through the app's control API: the replies by node, and the warnings."""
    app = create_app(Settings(broker_url=workers.broker, database_url=workers.db))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # `limit`: return once that many replies came (two workers of one name send two).
            replies = app.control.inspect(timeout=15, limit=expected).ping() or {}
    finally:
        app.close()
    return replies, caught


def assert_names_its_pool(worker: Worker, node: str) -> None:
    """The worker's log ties each pool process's claim id to the node name."""

    def logged() -> bool:
        text, pool = worker.text(), worker.pool()
        line = "trial worker {host}:{pid}:celery is a pool process of {node}"
        return bool(pool) and all(line.format(host=HOST, pid=pid, node=node) in text for pid in pool)

    wait_for(logged, 15, f"{node}'s pool processes to log their ids")


def test_two_workers_on_one_host_are_two_nodes(workers: Workers) -> None:
    started = workers.start(2)
    replies, caught = ping(workers, expected=2)
    nodes = {f"hpo-{w.pid}@{HOST}" for w in started}  # `hpo worker` execs Celery: the PID stays
    assert set(replies) == nodes, replies
    assert all(reply == {"ok": "pong"} for reply in replies.values()), replies
    assert not [w for w in caught if issubclass(w.category, DuplicateNodenameWarning)]
    for worker in started:
        assert_names_its_pool(worker, f"hpo-{worker.pid}@{HOST}")
        assert not [words for words in DUPLICATE_WORDS if words in worker.text()], worker.text()


def test_name_sets_the_node_name_and_expands_the_host(workers: Workers) -> None:
    short = HOST.partition(".")[0]
    plain, expanded = (
        workers.start(1, args=["--name", "trainer-1"], wait=False)[0],
        workers.start(1, args=["--name", "box-%n@%h"], wait=False)[0],
    )
    for worker in (plain, expanded):
        workers.wait_ready(worker)
    replies, _ = ping(workers, expected=2)
    assert set(replies) == {f"trainer-1@{HOST}", f"box-{short}@{HOST}"}, replies
    assert_names_its_pool(plain, f"trainer-1@{HOST}")


@pytest.mark.parametrize("bad", ["two\nlines", "a,b", "x%p"])
def test_a_bad_name_is_refused_before_anything_starts(workers: Workers, bad: str) -> None:
    proc = hpo("worker", "--name", bad, env=workers.env())
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: --name: {bad!r} is not a worker name"), lines
    assert "ready" not in proc.stdout + proc.stderr
