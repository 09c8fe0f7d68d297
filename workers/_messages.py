"""The one broker message a worker accepts, checked before kombu or Celery parse it.

hpo sends exactly one kind of message: ``hpo.run_trial`` with one trial id, as Celery's
protocol 2 over kombu's Redis transport (``CeleryExecutor.dispatch``). Anything else on a task
queue is either a bug or someone with broker access, and must not reach Celery: a malformed body
or header raises inside the worker's consumer after kombu has put the message in its ``unacked``
hash, so the worker dies and restarts into the same message (a crash loop).

:func:`decode_message` is a pure function (no I/O). It accepts what hpo's executor sends and
nothing else: every field Celery's worker reads is type-checked, unknown fields are refused
(Celery copies headers into the task's request context), and callbacks, errbacks, chains and
chords must be null (an attacker must not be able to chain other tasks). It returns the trial id
or raises :class:`MessageError` with a one-line reason naming the field.
"""

from __future__ import annotations

import base64
import json
import math
import reprlib
from collections.abc import Callable, Mapping
from typing import Any

from hpo import HPOError

__all__ = ["MAX_MESSAGE_BYTES", "MAX_TRIAL_ID", "TASK_NAME", "MessageError", "decode_message", "trial_id_of"]

TASK_NAME = "hpo.run_trial"
#: Trial ids are PostgreSQL ``integer`` keys: a larger id would fail in the database driver.
MAX_TRIAL_ID = 2**31 - 1
#: hpo's messages are about 1 kB; parsing is bounded by refusing anything much larger first.
MAX_MESSAGE_BYTES = 64 * 1024
_MAX_TIME_LIMIT = 365 * 86400  # seconds
_OPTIONS = ("callbacks", "errbacks", "chain", "chord")

_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 48
_repr.maxlist = _repr.maxdict = 4
_repr.maxlevel = 2


class MessageError(HPOError):
    """A broker message that is not an ``hpo.run_trial`` message as hpo sends it.

    Attributes:
        reason: One line saying which field is wrong and how.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def _show(value: Any) -> str:
    # reprlib bounds depth and each part; repr escapes newlines, so a reason stays one line.
    shown = _repr.repr(value)
    return shown if len(shown) <= 60 else f"{shown[:57]}..."


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return f"a list of {len(value)}"
    names = {dict: "an object", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def trial_id_of(value: Any) -> int:
    """``value`` if it is a trial id: an ``int`` (not a bool) in 1..2**31-1.

    Raises:
        MessageError: anything else.
    """
    if type(value) is not int or not 1 <= value <= MAX_TRIAL_ID:
        raise MessageError(f"invalid trial id {_show(value)}: not an integer in 1..{MAX_TRIAL_ID}")
    return value


# --- field checks: each returns what is wrong with a value, or None ------------------------------

Check = Callable[[Any], "str | None"]


def _null(value: Any) -> str | None:
    return None if value is None else f"must be null (hpo never sends it), got {_show(value)}"


def _text(max_len: int, *, nullable: bool = False, min_len: int = 0) -> Check:
    def check(value: Any) -> str | None:
        if value is None and nullable:
            return None
        # Printable only: no newlines in logs, and no lone surrogates, which redis-py cannot
        # encode when kombu writes the delivery tag into its unacked hash.
        if type(value) is str and min_len <= len(value) <= max_len and value.isprintable():
            return None
        null = " or null" if nullable else ""
        return f"must be a printable string of {min_len}..{max_len} characters{null}, got {_show(value)}"

    return check


def _flag(*, nullable: bool) -> Check:
    def check(value: Any) -> str | None:
        if type(value) is bool or (nullable and value is None):
            return None
        return f"must be true or false{' or null' if nullable else ''}, got {_show(value)}"

    return check


def _between(low: int, high: int) -> Check:
    def check(value: Any) -> str | None:
        if type(value) is int and low <= value <= high:
            return None
        return f"must be an integer in {low}..{high}, got {_show(value)}"

    return check


_count = _between(0, MAX_TRIAL_ID)


def _equal(*allowed: Any) -> Check:
    def check(value: Any) -> str | None:
        # type() too: True == 1 and 1.0 == 1 in Python, not in a message.
        if any(type(value) is type(a) and value == a for a in allowed):
            return None
        return f"must be {' or '.join(_show(a) for a in allowed)}, got {_show(value)}"

    return check


def _seconds(value: Any) -> bool:
    if value is None:
        return True
    return type(value) in (int, float) and math.isfinite(value) and 0 < value <= _MAX_TIME_LIMIT


def _timelimit(value: Any) -> str | None:
    if type(value) is list and len(value) == 2 and all(_seconds(v) for v in value):
        return None
    return f"must be [hard, soft]: each null or seconds in (0, {_MAX_TIME_LIMIT}], got {_show(value)}"


def _task(value: Any) -> str | None:
    if value == TASK_NAME and type(value) is str:
        return None
    if type(value) is str:
        return f"names an unregistered task {_show(value)}: this worker runs {TASK_NAME} only"
    return f"must be the task name {TASK_NAME!r}, got {_show(value)}"


def _content_type(value: Any) -> str | None:
    if value == "application/json" and type(value) is str:
        return None
    from kombu.serialization import registry

    name = registry.type_to_name.get(value) if type(value) is str else None
    known = f" ({name})" if name else ""
    return f"is {_show(value)}{known}, not accepted: JSON only"


def _fields(obj: Any, where: str, spec: Mapping[str, Check], required: tuple[str, ...]) -> None:
    """Check an object's fields against ``spec`` (the checks of nested objects raise)."""
    if type(obj) is not dict:
        raise MessageError(f"{where} must be an object, got {_kind(obj)}")
    for key in obj:
        if key not in spec:
            raise MessageError(f"{where} has an unknown field {_show(key)}")
    for key in required:
        if key not in obj:
            raise MessageError(f"{where}.{key} is missing")
    for key, check in spec.items():  # in the spec's order: the most telling reason first
        problem = check(obj[key]) if key in obj else None
        if problem:
            raise MessageError(f"{where}.{key} {problem}")


def _object(where: str, spec: Mapping[str, Check], required: tuple[str, ...]) -> Check:
    def check(value: Any) -> str | None:
        _fields(value, where, spec, required)  # raises with the nested field's own path
        return None

    return check


_ID = _text(255, min_len=1)
_HEADERS: dict[str, Check] = {
    "lang": _equal("py"),
    "task": _task,
    "id": _ID,
    "root_id": _text(255, nullable=True),
    "parent_id": _text(255, nullable=True),
    "shadow": _null,
    "eta": _null,
    "expires": _null,
    "group": _null,
    "group_index": _null,
    "retries": _count,
    "timelimit": _timelimit,
    "argsrepr": _text(4096, nullable=True),
    "kwargsrepr": _text(4096, nullable=True),
    "origin": _text(255, nullable=True),
    "ignore_result": _flag(nullable=True),
    "replaced_task_nesting": _count,
    "stamped_headers": _equal(None, []),
    "stamps": _equal(None, {}),
    "redelivered": _flag(nullable=False),  # kombu sets it when it puts an unacked message back
}
_DELIVERY_INFO: dict[str, Check] = {
    "exchange": _text(255),
    "routing_key": _text(255),
    "redelivered": _flag(nullable=False),
}
_PROPERTIES: dict[str, Check] = {
    "correlation_id": _text(255),
    "reply_to": _text(255),
    "delivery_mode": _equal(1, 2),
    "delivery_info": _object("properties.delivery_info", _DELIVERY_INFO, ("exchange", "routing_key")),
    "priority": _between(0, 255),
    "body_encoding": _equal("base64"),
    "delivery_tag": _ID,
}
_MESSAGE: dict[str, Check] = {
    "content-type": _content_type,
    "content-encoding": _equal("utf-8"),
    "headers": _object("headers", _HEADERS, ("task", "id")),
    "properties": _object("properties", _PROPERTIES, ("body_encoding", "delivery_tag", "delivery_info")),
    "body": lambda v: None if type(v) is str else f"must be a string, got {_kind(v)}",
}


# --- parsing ---------------------------------------------------------------------------------------


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate key")  # json.loads keeps the last silently; kombu would too
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _load(raw: bytes | str, where: str) -> Any:
    if isinstance(raw, bytes):
        if len(raw) > MAX_MESSAGE_BYTES:
            raise MessageError(f"{where} is {len(raw)} bytes, more than {MAX_MESSAGE_BYTES}")
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MessageError(f"{where} is not UTF-8 (byte {exc.start})") from None
    elif len(raw) > MAX_MESSAGE_BYTES:
        raise MessageError(f"{where} is {len(raw)} characters, more than {MAX_MESSAGE_BYTES}")
    try:
        return json.loads(raw, object_pairs_hook=_unique, parse_constant=_no_constant)
    except RecursionError:
        raise MessageError(f"{where} is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, duplicate keys, NaN, integers of 4300+ digits
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc).split(":")[0]
        raise MessageError(f"{where} is not JSON: {detail}") from None


def _trial_in_body(text: str) -> int:
    try:
        data = base64.b64decode(text, validate=True)
    except ValueError:  # binascii.Error, or characters outside ASCII
        raise MessageError("body is not base64") from None
    body = _load(data, "body")
    if type(body) is not list or len(body) != 3:
        raise MessageError(f"body must be [args, kwargs, options], got {_kind(body)}")
    args, kwargs, options = body
    if type(args) is not list or len(args) != 1:
        raise MessageError(f"invalid trial id: body args must be [trial_id], got {_kind(args)}")
    if kwargs != {} or type(kwargs) is not dict:
        raise MessageError(f"body kwargs must be {{}}, got {_show(kwargs)}")
    if type(options) is not dict:
        raise MessageError(f"body options must be an object, got {_kind(options)}")
    for key, value in options.items():
        if key not in _OPTIONS:
            raise MessageError(f"body options has an unknown field {_show(key)}")
        if value is not None:
            raise MessageError(f"body options.{key} must be null: hpo never chains tasks")
    return trial_id_of(args[0])


def decode_message(raw: bytes | str | Mapping[str, Any]) -> int:
    """The trial id of an ``hpo.run_trial`` message, as popped from Redis (or already loaded).

    Raises:
        MessageError: anything but the message hpo's executor sends; ``reason`` is one line.
    """
    message = raw if isinstance(raw, Mapping) else _load(raw, "message")
    _fields(message, "message", _MESSAGE, tuple(_MESSAGE))
    return _trial_in_body(message["body"])
