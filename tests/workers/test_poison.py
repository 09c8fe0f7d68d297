"""Poison messages: anything on a task queue that is not hpo's message never stops a worker.

Real Redis, real PostgreSQL, real `hpo worker` processes for the end-to-end cases; the pure
message check (``workers._messages.decode_message``) is fuzzed with hypothesis against a message
captured from Redis as hpo's executor sends it.
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
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from celery.exceptions import Reject
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from hpo import Settings
from hpo.storage import Storage
from tests.invariants import check_study
from workers._messages import MAX_TRIAL_ID, TASK_NAME, MessageError, decode_message
from workers._transport import RAW_LIMIT, Transport, dead_letter_key

from .conftest import Workers, wait_for, write_study
from .test_faults import snapshot, submit, wait_finished

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


def poison(message: dict[str, Any], trial: int) -> list[tuple[bytes, str]]:
    """The classes of poison: (raw message, what its reason must say)."""
    body = _body(message)

    def enc(m: Any) -> bytes:
        return json.dumps(m).encode()

    def args(value: Any) -> bytes:
        return enc(with_body(message, [[value], *body[1:]]))

    without_headers = {k: v for k, v in message.items() if k != "headers"}
    return [
        (b"hello, worker", "message is not JSON"),
        (b"\xff\xfe{}", "message is not UTF-8"),
        (b"[1, 2, 3]", "message must be an object"),
        (b'"just a string"', "message must be an object"),
        (b"[" * 5000, "message is nested too deeply"),
        (b'{"body": "' + b"A" * 70_000 + b'"}', "more than 65536"),
        (b'{"body": "", "body": ""}', "duplicate key"),
        # kombu's JSON reads {"__type__", "__value__"} objects as dates, bytes, decimals...
        (b'{"__type__": "decimal", "__value__": "not a number"}', "unknown field '__type__'"),
        (
            enc(changed(message, "headers.stamps", {"__type__": "bytes", "__value__": 5})),
            "headers.stamps must be",
        ),
        (enc(with_body(message, {"args": [trial], "kwargs": {}})), "body must be [args, kwargs, options]"),
        (enc(with_body(message, [[trial], {}])), "body must be [args, kwargs, options], got a list of 2"),
        (enc(with_body(message, "a string")), "body must be [args, kwargs, options], got a string"),
        (enc(changed(message, "body", "not base64!")), "body is not base64"),
        (enc(changed(message, "body", base64.b64encode(b"{nope").decode())), "body is not JSON"),
        (enc(changed(message, "headers.timelimit", "x")), "headers.timelimit must be [hard, soft]"),
        (enc(changed(message, "headers.eta", "garbage")), "headers.eta must be null"),
        (enc(changed(message, "headers.expires", "tomorrow")), "headers.expires must be null"),
        (
            enc(changed(message, "headers.task", "hpo.drop_everything")),
            "unregistered task 'hpo.drop_everything'",
        ),
        (enc(changed(message, "headers.retries", "1")), "headers.retries must be an integer"),
        (enc(changed(message, "headers.is_eager", True)), "headers has an unknown field 'is_eager'"),
        (enc(without_headers), "message.headers is missing"),
        (enc(changed(message, "content-type", "application/x-python-serialize")), "(pickle), not accepted"),
        (enc(changed(message, "properties.delivery_tag", "\udc80")), "properties.delivery_tag must be"),
        (enc(changed(message, "properties.delivery_info", [])), "properties.delivery_info must be an object"),
        *[(args(bad), "invalid trial id") for bad in (0, -1, 2**31, 2**63, "7", True, 1.5, None)],
        (enc(with_body(message, [[trial, trial], *body[1:]])), "invalid trial id"),
        (enc(with_body(message, [[trial], {"x": 1}, body[2]])), "body kwargs must be {}"),
        (
            enc(with_body(message, [[trial], {}, {**body[2], "callbacks": [{"task": "x"}]}])),
            "callbacks must be null",
        ),
        (enc(with_body(message, [[trial], {}, {**body[2], "chain": [{"task": "x"}]}])), "chain must be null"),
        (enc(with_body(message, [[trial], {}, {**body[2], "chord": {"task": "x"}}])), "chord must be null"),
    ]


def dead_letters(client: redis.Redis, queue: str) -> list[dict[str, Any]]:
    """The dead letters of ``queue``, oldest first."""
    return [json.loads(r) for r in reversed(client.lrange(dead_letter_key(queue), 0, -1))]


def check_dead_letter(record: dict[str, Any], raw: bytes, expected: str, queue: str, log: str) -> None:
    reason = record["reason"]
    assert expected in reason and "\n" not in reason, (expected, reason)
    assert record["queue"] == queue and record["size"] == len(raw)
    assert record["raw"] == raw.decode("utf-8", "backslashreplace")[:RAW_LIMIT]
    assert datetime.fromisoformat(record["at"]).tzinfo is not None
    assert f"rejected a message on queue {queue}: {reason};" in log, reason


# --- end to end: real workers ---------------------------------------------------------------------


def test_poison_is_dead_lettered_and_logged_and_the_worker_keeps_serving(
    tmp_path: Path, workers: Workers, storage: Storage, study_name: str, captured: dict[str, Any]
) -> None:
    (w,) = workers.start(1)
    submit(write_study(tmp_path / "a.yaml", study_name, t0=3, t1=2), workers, wait=True)
    before = snapshot(storage, study_name)
    pool = sorted(w.pool())
    cases = poison(captured, trial=before[0][0])  # the poison names a real trial

    client = redis.Redis.from_url(workers.broker)
    app = _app(workers.broker, workers.queue, workers.db)
    try:
        client.lpush(workers.queue, *[raw for raw, _ in cases])
        # A real message behind the poison (the queue is FIFO): its trial is finished, so it is skipped.
        app.send_task(TASK_NAME, args=[before[0][0]], task_id="poison-control", queue=workers.queue)
        wait_for(lambda: "[poison-control] succeeded" in w.text(), 30, "the message behind the poison")
        records = dead_letters(client, workers.queue)
        assert len(records) == len(cases)
        for record, (raw, expected) in zip(records, cases, strict=True):
            check_dead_letter(record, raw, expected, workers.queue, w.text())
        assert client.llen(workers.queue) == 0 and client.hlen("unacked") == 0  # none was ever delivered
    finally:
        app.close()
        client.close()
    assert snapshot(storage, study_name) == before
    # The same worker, the same pool processes, and it keeps running studies.
    assert w.proc.poll() is None and sorted(w.pool()) == pool
    second = f"{study_name}-b"
    submit(write_study(tmp_path / "b.yaml", second, t0=3, t1=2), workers)
    wait_finished(storage, second, workers)
    check_study(storage, second)
    assert w.proc.poll() is None and "Traceback" not in w.text()


def test_a_worker_restarting_onto_poison_in_the_queue_and_the_unacked_hash_serves(
    tmp_path: Path, workers: Workers, storage: Storage, study_name: str, captured: dict[str, Any]
) -> None:
    """What an older worker's crash leaves behind: the message that killed it back in the queue,
    or still in kombu's ``unacked`` hash; and an entry there that kombu itself cannot read."""
    client = redis.Redis.from_url(workers.broker)
    in_queue = json.dumps(with_body(captured, {"args": [1]})).encode()
    in_unacked = with_body(captured, [[1], {}])
    client.lpush(workers.queue, in_queue)
    client.hset("unacked", "poison-tag", json.dumps([in_unacked, "", workers.queue]))
    client.hset("unacked", "garbage-tag", b"\xffnot json")
    client.zadd("unacked_index", {"poison-tag": 0, "garbage-tag": 0})  # delivered long ago
    try:
        (w,) = workers.start(1)  # fails if the worker exits
        wait_for(lambda: len(dead_letters(client, workers.queue)) == 2, 20, "the two poison messages")
        queue_records = dead_letters(client, workers.queue)
        (unacked_record,) = dead_letters(client, "unacked")
        assert client.hlen("unacked") == 0 and client.zcard("unacked_index") == 0
    finally:
        client.close()
    restored = changed(
        changed(in_unacked, "headers.redelivered", True), "properties.delivery_info.redelivered", True
    )
    assert {r["raw"] for r in queue_records} == {in_queue.decode(), json.dumps(restored)}
    assert all("body must be [args, kwargs, options]" in r["reason"] for r in queue_records)
    assert "is not JSON [message, exchange, routing_key]" in unacked_record["reason"]
    submit(write_study(tmp_path / "s.yaml", study_name, t0=3, t1=2), workers)
    wait_finished(storage, study_name, workers)
    check_study(storage, study_name)
    assert w.proc.poll() is None and "Traceback" not in w.text()


def test_the_reaper_counts_only_hpo_messages_as_queued(broker_url: str, captured: dict[str, Any]) -> None:
    from workers._executor import CeleryExecutor

    queue = f"q-{uuid.uuid4().hex[:8]}"
    executor = CeleryExecutor(_app(broker_url, queue))
    client = redis.Redis.from_url(broker_url)
    try:
        executor.dispatch([3, 4])
        client.lpush(queue, b"garbage", json.dumps(with_body(captured, [[5], {}])))
        entries = {
            "a": b"5",
            "b": b"\xff",
            "c": json.dumps([with_body(captured, [[9], {}, {}]), "", queue]),
            "d": json.dumps([with_body(captured, [[11], {}, {}]), "", "another-queue"]),
            "e": json.dumps([with_body(captured, [[12], {}]), "", queue]),
            "f": b"[" * 100_000,
        }
        client.hset("unacked", mapping=entries)
        assert executor.queued_trial_ids() == {3, 4, 9}
    finally:
        client.close()
        executor.app.close()


# --- the pieces -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "host", "ssl"),
    [
        ("redis://127.0.0.1:6379/4", "127.0.0.1", None),
        ("rediss://:pw@redis.example:6380/0", "redis.example", "CERT_REQUIRED"),
        ("rediss://:pw@redis.example:6380/0?ssl_cert_reqs=none", "redis.example", "CERT_NONE"),
        (
            "rediss://redis.example:6380/0?ssl_cert_reqs=required&ssl_ca_certs=/ca.pem",
            "redis.example",
            "CERT_REQUIRED",
        ),
    ],
)
def test_redis_urls_get_the_checking_transport_and_keep_their_tls(
    url: str, host: str, ssl: str | None
) -> None:
    conn = _app(url).connection_for_read()  # builds the transport; connects to nothing
    assert isinstance(conn.transport, Transport)
    assert conn.hostname == host and (conn.ssl and conn.ssl["ssl_cert_reqs"].name) == ssl
    if "ssl_ca_certs" in url:
        assert conn.ssl["ssl_ca_certs"] == "/ca.pem"


def test_other_brokers_keep_their_own_transport() -> None:
    conn = _app("amqp://guest@localhost//").connection_for_read()
    assert not isinstance(conn.transport, Transport)


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
