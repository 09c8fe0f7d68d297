"""kombu's Redis transport, with hpo's message check in front of kombu and Celery.

A worker pops a message with ``BRPOP``; kombu then parses it, puts it in its ``unacked`` hash and
hands it to Celery. A message Celery cannot parse raises in the worker's event loop, the worker
exits, and kombu puts the message back for the next start: a crash loop. So the check runs on the
raw reply of ``BRPOP``, before kombu parses anything: a message :func:`decode_message` refuses is
logged, dead-lettered and dropped (for kombu the ``BRPOP`` simply timed out). It never enters the
``unacked`` hash, and no task or database row sees it.

Dead letters go to the Redis list ``<queue>.dead``, newest first, capped at
:data:`DEAD_LETTER_CAP` entries; each is a JSON object ``{"reason", "queue", "at", "worker",
"size", "raw"}`` with ``raw`` cut to :data:`RAW_LIMIT` characters.

Celery selects this transport through ``broker_transport`` (``workers.app.create_app``) for
``redis://`` and ``rediss://`` URLs; everything else is kombu's.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import redis
from kombu.transport import redis as kombu_redis
from kombu.utils import json as kombu_json
from kombu.utils.encoding import bytes_to_str

from ._messages import MessageError, decode_message

__all__ = ["DEAD_LETTER_CAP", "RAW_LIMIT", "Channel", "Transport", "dead_letter_key", "dead_letter_record"]

log = logging.getLogger(__name__)

DEAD_LETTER_CAP = 1000
RAW_LIMIT = 4096
_LOGGED_RAW = 200


def dead_letter_key(queue: str) -> str:
    """The Redis list holding the rejected messages of ``queue``."""
    return f"{queue}.dead"


def _text(raw: bytes | str) -> str:
    return raw.decode("utf-8", "backslashreplace") if isinstance(raw, bytes) else raw


def dead_letter_record(raw: bytes | str, queue: str, reason: str, at: datetime | None = None) -> str:
    """The JSON dead letter of a rejected message (``raw`` cut to :data:`RAW_LIMIT` characters)."""
    record = {
        "reason": reason,
        "queue": queue,
        "at": (at or datetime.now(UTC)).isoformat(timespec="milliseconds"),
        "worker": f"{socket.gethostname()}:{os.getpid()}",
        "size": len(raw),
        "raw": _text(raw)[:RAW_LIMIT],
    }
    return json.dumps(record)


def _is_kombu_queue(queue: str) -> bool:
    # The only queues besides task queues that a process of this app BRPOPs: kombu's replies to
    # `celery inspect` / `celery control` (flower), named `<id>.reply.celery.pidbox`.
    return queue.endswith(".pidbox")


def _restorable(entry: bytes) -> bool:
    """Whether kombu can read an ``unacked`` entry back: JSON ``[message, exchange, routing_key]``."""
    try:
        _message, _exchange, _routing_key = kombu_json.loads(bytes_to_str(entry))
    except Exception:  # kombu's JSON hooks raise what their decoders raise (TypeError, InvalidOperation...)
        return False
    return True


class QoS(kombu_redis.QoS):
    """kombu's Redis QoS; an ``unacked`` entry it cannot read is dead-lettered, not restored.

    kombu reads the ``unacked`` hash when a worker starts and periodically: one entry written
    there by hand (anyone with broker access can) would otherwise stop every worker at start.
    """

    def restore_by_tag(self, tag: Any, client: Any = None, leftmost: bool = False) -> None:
        with self.channel.conn_or_acquire(client) as conn:
            entry = conn.hget(self.unacked_key, tag)
        if entry and not _restorable(entry):
            reason = f"unacked entry {bytes_to_str(tag)!r} is not JSON [message, exchange, routing_key]"
            self.channel.dead_letter(self.unacked_key, entry, reason)
            self._remove_from_indices(tag).execute()
            return
        super().restore_by_tag(tag, client=client, leftmost=leftmost)


class Channel(kombu_redis.Channel):
    """kombu's Redis channel; every message it pops from a task queue passes the check first."""

    QoS = QoS

    def _create_client(self, asynchronous: bool = False) -> Any:
        client = super()._create_client(asynchronous=asynchronous)
        if asynchronous:  # the channel's own client, the one that sends BRPOP and reads its reply
            parse = client.response_callbacks.get("BRPOP")
            client.set_response_callback("BRPOP", functools.partial(self._screen, parse))
        return client

    def _screen(self, parse: Callable[..., Any] | None, response: Any, **options: Any) -> Any:
        """redis-py's parser of a ``BRPOP`` reply: ``(key, message)``, or None to drop it."""
        popped = parse(response, **options) if parse else response
        if not popped:
            return popped
        key, raw = popped
        queue = self._queue_of(key)
        if _is_kombu_queue(queue):
            return popped
        try:
            decode_message(raw)
        except MessageError as exc:
            reason = exc.reason
        except Exception as exc:  # a bug in the check must not turn into a crash loop either
            log.exception("the message check failed on queue %s", queue)
            reason = f"the message check failed: {type(exc).__name__}"
        else:
            return popped
        self.dead_letter(queue, raw, reason)
        return None  # to kombu, as if BRPOP had timed out: it polls again

    def _queue_of(self, key: bytes | str) -> str:
        name = bytes_to_str(key)
        if self.global_keyprefix and name.startswith(self.global_keyprefix):
            name = name[len(self.global_keyprefix) :]
        return name.rsplit(self.sep, 1)[0]  # a priority queue's key is `<queue><sep><priority>`

    def dead_letter(self, queue: str, raw: bytes | str, reason: str) -> None:
        """Log a rejected message at error level and push it to ``<queue>.dead`` (capped)."""
        key = dead_letter_key(queue)
        log.error(
            "rejected a message on queue %s: %s; dead-lettered to %s: %r",
            queue,
            reason,
            key,
            _text(raw)[:_LOGGED_RAW],
        )
        try:
            with self.conn_or_acquire() as client:
                pipe = client.pipeline()
                pipe.lpush(key, dead_letter_record(raw, queue, reason))
                pipe.ltrim(key, 0, DEAD_LETTER_CAP - 1)
                pipe.execute()
        except (redis.RedisError, OSError) as exc:  # logged above; the message is dropped either way
            log.warning("could not dead-letter the rejected message to %s: %s", key, exc)


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with :class:`Channel`."""

    Channel = Channel
