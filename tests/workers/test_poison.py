"""Poison messages: anything on a task queue that is not hpo's message never stops a worker.

The pure message check (``workers._messages.decode_message``) is fuzzed with hypothesis against
a message captured from Redis as hpo's executor sends it.
"""

from __future__ import annotations

import base64
import copy
import functools
import json
import operator
import os
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis
from celery.exceptions import Reject
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from hpo import Settings
from workers._messages import MAX_TRIAL_ID, TASK_NAME, MessageError, decode_message

pytestmark = pytest.mark.services


def _app(broker: str, queue: str = "hpo", db: str = "sqlite:////tmp/unused.db"):  # type: ignore[no-untyped-def]
    from workers.app import create_app

    return create_app(Settings(broker_url=broker, database_url=db, queue=queue))


@pytest.fixture(scope="module")
def captured(redis_url: str) -> Iterator[dict[str, Any]]:
    """A message exactly as hpo's executor puts it in Redis (trial 7)."""
    from workers._executor import CeleryExecutor

    queue = f"capture-{uuid.uuid4().hex[:8]}"
    app = _app(redis_url, queue)
    client = redis.Redis.from_url(redis_url)
    try:
        CeleryExecutor(app).dispatch([7])
        (raw,) = client.lrange(queue, 0, -1)
    finally:
        client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
        client.close()
        app.close()
    yield json.loads(raw)


def _b64(data: Any) -> str:
    return base64.b64encode(json.dumps(data).encode()).decode()


def _body(message: dict[str, Any]) -> Any:
    return json.loads(base64.b64decode(message["body"]))


def changed(message: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``message`` with the dotted ``path`` set to ``value``."""
    out = copy.deepcopy(message)
    *parents, last = path.split(".")
    node = out
    for key in parents:
        node = node[key]
    node[last] = value
    return out


def with_body(message: dict[str, Any], body: Any) -> dict[str, Any]:
    return changed(message, "body", _b64(body))


# --- the pieces -------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [2**31, 2**63, 0, False])
def test_the_task_checks_the_id_range_too(bad: int) -> None:
    task = _app("redis://127.0.0.1:6379/4").tasks[TASK_NAME]
    with pytest.raises(Reject, match="invalid trial id"):
        task(bad)


def test_the_check_accepts_what_hpo_sends(captured: dict[str, Any]) -> None:
    raw = json.dumps(captured)
    assert decode_message(raw) == decode_message(raw.encode()) == decode_message(captured) == 7
    # as kombu puts it back after a restart, and as a task sends it (the next stage's trials)
    redelivered = changed(
        changed(captured, "headers.redelivered", True), "properties.delivery_info.redelivered", True
    )
    from_a_task = changed(changed(captured, "headers.parent_id", "hpo-trial-1-x"), "headers.root_id", "r")
    for message in (redelivered, from_a_task, changed(captured, "headers.timelimit", [300, 240.5])):
        assert accepted(json.dumps(message).encode()) == 7
    assert accepted(json.dumps(with_body(captured, [[MAX_TRIAL_ID], {}, {}])).encode()) == MAX_TRIAL_ID


# --- fuzzing the pure check ----------------------------------------------------------------------


@functools.cache
def _celery() -> tuple[Any, Any]:
    from kombu import Connection

    return _app("redis://127.0.0.1:6379/4"), Connection("memory://").default_channel


def celery_reads(raw: bytes) -> list[Any]:
    """What kombu and Celery's worker do with a popped message, up to the task's arguments."""
    from celery.worker.request import Request
    from kombu.utils import json as kombu_json

    app, channel = _celery()
    payload = kombu_json.loads(raw)
    message = channel.Message(payload, channel=channel)
    kombu_json.dumps([payload, "", "q"]).encode("utf-8")  # the unacked hash entry
    str(message.delivery_tag).encode("utf-8")  # its field name, as redis-py encodes it
    request = Request(message, app=app, task=app.tasks[TASK_NAME])
    _hard, _soft = request.time_limits  # what the pool unpacks
    assert request.kwargs == {} and request.eta is None and request.expires is None
    return list(request.args)


def accepted(raw: bytes) -> int | None:
    """The property: a trial id Celery reads the same way, or MessageError with one line."""
    try:
        trial = decode_message(raw)
    except MessageError as exc:
        assert exc.reason and "\n" not in exc.reason and len(exc.reason) <= 300, exc.reason
        return None
    assert type(trial) is int and 1 <= trial <= MAX_TRIAL_ID
    assert celery_reads(raw) == [trial]
    return trial


def fuzz(raw: bytes) -> None:
    event("accepted" if accepted(raw) else "rejected")  # --hypothesis-show-statistics


FUZZ = settings(
    max_examples=int(os.environ.get("HPO_HYPOTHESIS_EXAMPLES", "300")),
    deadline=timedelta(milliseconds=500),
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
EDGES = st.sampled_from(
    [0, 1, -1, 7, MAX_TRIAL_ID, 2**31, 2**63, 1.5, 1e400, True, "", "7", "\udc80", "\n", {}, []]
)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | EDGES
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        yield from _paths(child, (*prefix, key))


def _mutate(document: Any, data: st.DataObject) -> Any:
    """One random change: a node replaced (by random JSON or another node's value), a key deleted
    or a key added."""
    document = copy.deepcopy(document)
    paths = list(_paths(document))[1:]
    path = data.draw(st.sampled_from(paths))
    *parents, last = path
    node = document
    for key in parents:
        node = node[key]
    values = JSON | st.sampled_from(paths).map(lambda p: functools.reduce(operator.getitem, p, document))
    op = data.draw(st.sampled_from(["replace", "delete", "add"]))
    value = copy.deepcopy(data.draw(values))
    if op == "delete" and isinstance(node, dict):
        del node[last]
    elif op == "add" and isinstance(node[last], dict):
        node[last][data.draw(st.text(max_size=8))] = value
    else:
        node[last] = value
    return document


def _encode(document: Any, ascii_only: bool) -> bytes:
    return json.dumps(document, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


@FUZZ
@given(raw=st.binary(max_size=3000) | st.text(max_size=1000).map(str.encode))
def test_fuzz_random_bytes(raw: bytes) -> None:
    fuzz(raw)


@FUZZ
@given(document=JSON, ascii_only=st.booleans())
def test_fuzz_random_json(document: Any, ascii_only: bool) -> None:
    fuzz(_encode(document, ascii_only))


@FUZZ
@given(data=st.data(), in_body=st.booleans(), ascii_only=st.booleans())
def test_fuzz_mutations_of_a_real_message(
    captured: dict[str, Any], data: st.DataObject, in_body: bool, ascii_only: bool
) -> None:
    # in the body: change the decoded body, then encode it as hpo would
    message = with_body(captured, _mutate(_body(captured), data)) if in_body else _mutate(captured, data)
    fuzz(_encode(message, ascii_only))
