"""The Celery app factory.

``create_app()`` builds an app from hpo's settings; ``app`` (``celery -A workers.app:app``) is
created on first attribute access, never by importing this module.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import ssl
import threading
from functools import cache
from typing import Any
from urllib.parse import parse_qs, urlsplit

from celery import Celery, signals
from celery.exceptions import ImproperlyConfigured

from hpo import Settings, SpecError, get_settings

from ._messages import TASK_NAME

__all__ = [
    "TASK_NAME",
    "check_time_limits",
    "create_app",
    "get_app",
    "node_name",
    "queues_of",
    "settings_of",
    "worker_id",
]

log = logging.getLogger(__name__)

# A node name every tool can address: `celery inspect -d` splits on commas, flower puts it in URL
# paths, and a log line or a table cell must stay one line. `%h`, `%n` and `%d` are Celery's host,
# short host and domain (any other `%` makes Celery's worker fail with a traceback).
_NAME_PART = r"(?:[A-Za-z0-9_.-]|%[hnd])+"
_NODE_NAME = re.compile(rf"{_NAME_PART}(?:@{_NAME_PART})?")
_NODE_NAME_MAX = 200

# This worker's node name, recorded in its main process: the pool processes forked from it
# inherit it and name it next to their own id (what `hpo_trials.worker` holds).
_node: str | None = None
_database_url: str | None = None  # set by the main process before it forks its pool


def worker_id() -> str:
    """This worker process's id in the database: host, pid and kind."""
    return f"{socket.gethostname()}:{os.getpid()}:celery"


def node_name(name: str | None = None) -> str:
    """The Celery node name (``--hostname``) of a worker started by this process.

    The default, ``hpo-PID@HOST``, is unique among the live workers of a host and stays the same
    for the life of the worker (``hpo worker`` execs Celery, which keeps the PID), so two workers
    on one host are two nodes in ``celery inspect`` and flower. A name without ``@HOST`` gets
    this host's name.

    Raises:
        SpecError: ``name`` is empty, longer than 200 characters, or has a character other than
            letters, digits, ``. _ -``, one ``@`` and Celery's ``%h``, ``%n``, ``%d``.
    """
    if name is None:
        return f"hpo-{os.getpid()}@%h"
    if len(name) > _NODE_NAME_MAX or not _NODE_NAME.fullmatch(name):
        raise SpecError(
            f"--name: {name!r} is not a worker name: up to {_NODE_NAME_MAX} letters, digits, '.', '_' "
            "or '-', optionally @HOST; %h, %n, %d expand to this host's name, short name, domain",
            field="--name",
        )
    return name if "@" in name else f"{name}@%h"


def check_time_limits(soft: float, hard: float, visibility: float) -> None:
    """Refuse settings under which Redis would deliver a running task a second time.

    Raises:
        ImproperlyConfigured: unless soft < hard < visibility timeout.
    """
    if not 0 < soft < hard < visibility:
        raise ImproperlyConfigured(
            f"task time limits must satisfy soft ({soft:g} s) < hard ({hard:g} s) < Redis visibility_timeout "
            f"({visibility:g} s): otherwise a trial still running is delivered again"
        )


def _broker_ssl(broker_url: str) -> dict[str, Any] | None:
    parts = urlsplit(broker_url)
    if parts.scheme != "rediss" or "ssl_cert_reqs" in parse_qs(parts.query):
        return None
    return {"ssl_cert_reqs": ssl.CERT_REQUIRED}  # verify the server unless the URL says otherwise


def _broker_transport(broker_url: str) -> str | None:
    # kombu's Redis transport with hpo's message check in front (workers/_transport.py). Chosen by
    # name, so kombu still parses the URL as for `redis://`; other brokers keep kombu's own.
    return "workers._transport:Transport" if urlsplit(broker_url).scheme in ("redis", "rediss") else None


def create_app(settings: Settings | None = None) -> Celery:
    """A Celery app configured from hpo's settings (``HPO_BROKER_URL``, ``HPO_DATABASE_URL``...).

    JSON only, every message checked before Celery parses it (``workers._transport``), late
    acknowledgement, redelivery when a pool process dies, one message prefetched per process,
    and time limits strictly below the Redis visibility timeout (set everywhere Celery reads it).

    Raises:
        ImproperlyConfigured: no broker, or time limits that conflict.
    """
    settings = settings or get_settings()
    if not settings.broker_url:
        raise ImproperlyConfigured("HPO_BROKER_URL is not set: remote workers need a broker")
    soft, hard, visibility = settings.time_limits()
    check_time_limits(soft, hard, visibility)
    app = Celery("hpo", set_as_current=False)
    transport = {"visibility_timeout": visibility}
    app.conf.update(
        broker_url=settings.broker_url,
        broker_use_ssl=_broker_ssl(settings.broker_url),
        broker_transport=_broker_transport(settings.broker_url),
        broker_transport_options=transport,
        result_backend_transport_options=transport,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # Redis down when a worker starts: wait for it
        task_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_ignore_result=True,  # the database holds every result
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=hard,
        task_soft_time_limit=soft,
        task_default_queue=settings.queue,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_hijack_root_logger=False,
    )
    # hpo's own settings ride on the app, not in app.conf: Celery's config stays plain data
    # (flower and `celery inspect conf` serialise it).
    app.hpo_settings = settings
    from . import tasks

    tasks.register(app)
    return app


def queues_of(app: Celery) -> list[str]:
    """The queues this worker consumes (``-Q``; default ``HPO_QUEUE``): it runs trials of studies
    bound to these only, whatever queue a message came through (a message says what its sender
    wants, so it proves nothing)."""
    consumed = list(app.amqp.queues.consume_from or ())
    return consumed or [settings_of(app).queue]


def settings_of(app: Celery) -> Settings:
    """The hpo settings an app was created with."""
    settings: Settings = app.hpo_settings  # type: ignore[attr-defined]
    return settings


@cache
def get_app() -> Celery:
    """The process's app, created on first use."""
    return create_app()


def __getattr__(name: str) -> Any:
    # `celery -A workers.app:app` asks for this attribute; build the app only then.
    if name == "app":
        return get_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@signals.worker_init.connect
def _prepare_worker(sender: Any = None, **_: Any) -> None:
    import importlib

    global _node, _database_url
    _node = sender.hostname

    from hpo.orchestration import check_database_shareable
    from hpo.storage import Storage

    settings = settings_of(sender.app)
    _database_url = settings.database_url
    try:
        check_database_shareable(settings.database_url)
        # A worker that cannot use the database would take messages and drop them: it refuses to
        # start instead (unreachable, wrong password, or a schema behind this code's).
        Storage(settings.database_url).check_schema()
    except Exception as exc:
        # Refuse to start, with hpo's one-line reason. Celery logs and ignores an exception a
        # signal handler raises, so leave through SystemExit, which it lets through.
        log.critical("refusing to start: %s", exc)
        raise SystemExit(f"error: {exc}") from None
    # The pool processes are forked from this one after this signal: import the code a trial
    # runs here, once, rather than in every pool process's first trial. SciPy's QMC module is
    # what a stage's Sobol points need: imported lazily, it cost the first trial that ended a
    # stage in each pool process seconds under load, with the next stage already running.
    importlib.import_module("hpo.orchestration")
    importlib.import_module("scipy.stats.qmc")


@signals.worker_process_init.connect
def _pool_process_init(**_: Any) -> None:
    # Pool processes are forked: one BLAS thread each (the parent set the environment before
    # NumPy loaded; this is a guard), and no database connection inherited from the parent
    # (hpo.storage drops its engines after fork).
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    # Its database connection opened now, not by its first trial's claim, which it cost ~125 ms
    # (~235 ms with 32 pool processes starting at once: bench/scale.py's claim p99 was those
    # first claims). One that fails here is the first claim's to retry and report.
    if _database_url is not None:
        from ._executor import storage_for_url

        with contextlib.suppress(Exception):
            storage_for_url(_database_url).connect()
    # The one line that ties a trial's claim (`hpo_trials.worker`) to the node flower shows.
    log.info("trial worker %s is a pool process of %s", worker_id(), _node)


@signals.worker_ready.connect
def _start_reaper(sender: Any = None, **_: Any) -> None:
    """Each worker's main process reaps periodically: expired leases and lost messages."""
    app: Celery = sender.app
    settings = settings_of(app)
    thread = threading.Thread(target=_reap_forever, args=(app, settings), name="hpo-reaper", daemon=True)
    thread.start()


def _reap_forever(app: Celery, settings: Settings) -> None:
    from hpo.orchestration import reap
    from hpo.storage import Storage, StorageError

    from ._executor import CeleryExecutor

    storage = Storage(settings.database_url)
    executor = CeleryExecutor(app=app)
    stop = threading.Event()
    while not stop.wait(settings.reaper_interval):
        try:
            sent = reap(storage, executor, grace=settings.requeue_grace, requeue_after=settings.requeue_after)
            if sent:
                log.info("reaper re-sent %d trials", len(sent))
        except StorageError as exc:  # the database is down or out of reach (a lost network): one
            log.warning("reaper pass failed: %s", exc)  # line a pass, until it is back
        except Exception:  # the broker may be down for a while too; try again next round
            log.warning("reaper pass failed", exc_info=True)
