"""The Celery executor: hpo's :class:`~hpo._executor.Executor` over a Celery app."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Sequence
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from celery import Celery
from kombu.exceptions import KombuError, OperationalError

from hpo import Settings
from hpo._urls import InvalidURLError, redact_url
from hpo.orchestration import BrokerError, Executor
from hpo.storage import Storage

from ._messages import TASK_NAME, MessageError, decode_message
from .app import node_name, settings_of

__all__ = ["CeleryExecutor", "executor_for", "make_executor", "storage_for", "storage_for_url"]

_TASK_ID_PREFIX = "hpo-trial-"


def _task_id(trial_id: int) -> str:
    # The trial id in the message's own id: a person reading the queue sees which trial it is.
    return f"{_TASK_ID_PREFIX}{trial_id}-{uuid.uuid4().hex[:12]}"


def _trial_in(message: Any) -> int | None:
    if message is None:
        return None
    try:
        return decode_message(message)
    except MessageError:
        return None


def _unacked_message(entry: bytes, queue: str) -> Any:
    """The message of a kombu ``unacked`` entry (``[message, exchange, routing_key]``) of ``queue``."""
    try:
        value = json.loads(entry)
    except (ValueError, RecursionError):
        return None
    if type(value) is list and len(value) == 3 and value[2] == queue and type(value[0]) is dict:
        return value[0]
    return None


class CeleryExecutor(Executor):
    """Sends ``hpo.run_trial`` messages with a Celery app."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self.settings: Settings = settings_of(app)
        self.broker = redact_url(self.settings.broker_url or "")

    @property
    def queue(self) -> str:
        return self.settings.queue

    def check(self) -> None:
        try:
            with self.app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, interval_start=0, timeout=3)
        except (OSError, KombuError) as exc:
            if "DB index is out of range" in str(exc):  # Redis' reply to SELECT: bad input, not an outage
                db = urlsplit(self.settings.broker_url or "").path.strip("/") or "0"
                raise InvalidURLError(
                    "broker URL",
                    f"the Redis server has no database {db} (DB index is out of range; by default: 0..15)",
                ) from None
            raise BrokerError(f"broker {self.broker} is unreachable: {exc}") from None

    def dispatch(self, trial_ids: Sequence[int]) -> None:
        retry = {"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 2.0}
        try:
            with self.app.producer_or_acquire() as producer:
                for trial_id in trial_ids:
                    self.app.send_task(
                        TASK_NAME,
                        args=[int(trial_id)],
                        task_id=_task_id(int(trial_id)),
                        queue=self.settings.queue,
                        producer=producer,
                        retry=True,
                        retry_policy=retry,
                    )
        except (OSError, OperationalError, KombuError) as exc:
            raise BrokerError(f"cannot send trials to broker {self.broker}: {exc}") from None

    def queued_trial_ids(self) -> set[int] | None:
        url = self.settings.broker_url or ""
        if not url.startswith(("redis://", "rediss://")):
            return None
        import redis

        try:
            client = redis.Redis.from_url(url, socket_timeout=5)
            with client:
                queued = client.lrange(self.settings.queue, 0, -1)
                # Delivered, unacknowledged messages (kombu's Redis transport keeps them here).
                unacked = client.hvals("unacked")
        except (redis.RedisError, OSError, ValueError):
            return None
        # Anyone with broker access can write these: what is not hpo's message (the worker
        # refuses it too) is no queued trial, and never stops the count.
        messages = [*queued, *(_unacked_message(entry, self.settings.queue) for entry in unacked)]
        return {trial for trial in map(_trial_in, messages) if trial is not None}

    def worker_command(
        self, *, concurrency: int, queues: str | None, loglevel: str, name: str | None = None
    ) -> list[str]:
        """The Celery worker's command line; its node name is ``name`` (see
        :func:`workers.app.node_name`), by default ``hpo-PID@HOST`` with this process's PID.

        Raises:
            SpecError: ``name`` is not a usable node name.
        """
        return [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers.app:app",
            "worker",
            f"--hostname={node_name(name)}",
            f"--concurrency={concurrency}",
            "--pool=prefork",
            f"--loglevel={loglevel}",
            f"--queues={queues or self.settings.queue}",
            "--without-gossip",
            "--without-mingle",
        ]


def make_executor(broker_url: str, database_url: str, queue: str | None = None) -> CeleryExecutor:
    """The ``hpo.executors`` entry point: an executor for these URLs (and this queue, default
    ``HPO_QUEUE``)."""
    from hpo import Settings

    from .app import create_app

    options = {} if queue is None else {"queue": queue}
    return CeleryExecutor(create_app(Settings(broker_url=broker_url, database_url=database_url, **options)))


@cache
def storage_for_url(url: str) -> Storage:
    """The storage of this database URL (one per process)."""
    return Storage(url)


def storage_for(app: Celery) -> Storage:
    """The storage of this app's database (one per process)."""
    return storage_for_url(settings_of(app).database_url)


_executors: dict[int, CeleryExecutor] = {}


def executor_for(app: Celery) -> CeleryExecutor:
    """An executor that sends with this app (one per app)."""
    ex = _executors.get(id(app))
    if ex is None:
        ex = _executors[id(app)] = CeleryExecutor(app)
    return ex
