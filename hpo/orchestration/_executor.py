"""Remote execution: the interface a message-queue executor implements, and how hpo finds one.

``hpo`` never imports Celery or ``workers``: the Celery executor registers itself under the
``hpo.executors`` entry-point group (see ``pyproject.toml``) and is loaded by name when a broker
is configured. The database stays the truth; an executor only carries trial ids to workers.
"""

from __future__ import annotations

import socket
from abc import ABC, abstractmethod
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path

from .._errors import HPOError
from .._urls import InvalidURLError

__all__ = ["BrokerError", "Executor", "check_database_shareable", "load_executor"]

ENTRY_POINT_GROUP = "hpo.executors"


class BrokerError(HPOError):
    """The message broker cannot be reached or refused a message."""


class Executor(ABC):
    """Sends trial ids to remote workers through a message broker."""

    @property
    @abstractmethod
    def queue(self) -> str:
        """The queue this executor sends to; studies record it, and reapers only handle their own."""

    @abstractmethod
    def check(self) -> None:
        """Raise :class:`BrokerError` if the broker is unreachable, and
        :class:`~hpo._urls.InvalidURLError` if the URL names what the broker lacks (a Redis
        database beyond the server's count). Called before anything is written, so a study is
        never half-submitted."""

    @abstractmethod
    def dispatch(self, trial_ids: Sequence[int]) -> None:
        """Put one message per trial on the queue.

        Raises:
            BrokerError: the broker refused or is unreachable.
        """

    @abstractmethod
    def queued_trial_ids(self) -> set[int] | None:
        """Trial ids whose message sits in the queue or is delivered but not yet acknowledged,
        or None when the broker cannot be inspected (the reaper then re-sends by age only)."""

    @abstractmethod
    def worker_command(
        self, *, concurrency: int, queues: str | None, loglevel: str, name: str | None = None
    ) -> list[str]:
        """The command line that starts a worker process with these options; ``name`` is the
        worker's name where the executor lists its workers (default: one unique to the process
        that runs the command line).

        Raises:
            SpecError: ``name`` is not a name the executor can use.
        """


def load_executor(name: str, broker_url: str, database_url: str, *, queue: str | None = None) -> Executor:
    """The executor registered as ``name`` in the ``hpo.executors`` entry-point group.

    Args:
        name: The executor's entry-point name (``celery``).
        broker_url: The broker.
        database_url: The results database.
        queue: The queue to send to (default: the configured one, ``HPO_QUEUE``).

    Raises:
        HPOError: no such executor is installed.
    """
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not found:
        raise HPOError(f"no executor {name!r} is installed (entry-point group {ENTRY_POINT_GROUP})")
    factory = found[0].load()
    options = {} if queue is None else {"queue": queue}
    executor = factory(broker_url=broker_url, database_url=database_url, **options)
    if not isinstance(executor, Executor):
        raise HPOError(f"executor {name!r} is not an hpo Executor")
    return executor


def check_database_shareable(database_url: str, *, option: str = "HPO_DATABASE_URL") -> str:
    """The database URL as remote workers should use it; a SQLite file must exist here.

    A relative SQLite path becomes absolute (pool processes and the reaper must open the same
    file whatever their working directory).

    Args:
        database_url: The database URL a worker was given.
        option: How it was given (``--db``, ``HPO_DATABASE_URL``), for the message.

    Raises:
        InvalidURLError: a SQLite database that is not a file on this host (bad input: workers on
            other hosts need PostgreSQL).
    """
    if not database_url.startswith("sqlite"):
        return database_url
    prefix, _, rest = database_url.partition(":///")
    path, sep, query = rest.partition("?")
    if not path or path == ":memory:" or not Path(path).is_file():
        # A worker is often on another host than the submitter: say so, and what works there.
        raise InvalidURLError(
            option,
            f"no SQLite database {path or database_url!r} on this host ({socket.gethostname()}): "
            "a SQLite study can only use workers on the host that has its file (same path); "
            "workers on other hosts need PostgreSQL (postgresql+psycopg://USER@HOST/DB)",
        )
    return f"{prefix}:///{Path(path).resolve()}{sep}{query}"
