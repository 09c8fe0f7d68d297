"""Settings: flags, then ``HPO_*`` environment variables, then these defaults."""

from __future__ import annotations

from functools import cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["WORKER_POOL", "Settings", "get_settings"]

WORKER_POOL = {"HPO_DB_POOL_SIZE": "1", "HPO_DB_MAX_OVERFLOW": "0", "HPO_DB_APPLICATION_NAME": "hpo-worker"}
"""The connection pool of a worker's processes, unless the environment says otherwise: one
connection each. A pool process runs one trial at a time, and its heartbeat thread waits the few
milliseconds a claim or a finish holds that connection, so 64 pool processes stay well within
PostgreSQL's default ``max_connections`` of 100 (docs/deploy.md: when to put PgBouncer in front)."""


class Settings(BaseSettings):
    """hpo's configuration, read from ``HPO_*`` environment variables.

    Attributes:
        database_url: SQLAlchemy URL of the results database (``HPO_DATABASE_URL``).
        artifacts: Artifact store of the studies submitted (``HPO_ARTIFACTS``): a folder
            (``file:///DIR`` or a path) or ``s3://BUCKET/PREFIX``; unset: beside a SQLite database
            file, else ``./hpo-artifacts`` (see :func:`hpo.artifacts.resolve_store_url`).
        broker_url: Celery broker URL (``HPO_BROKER_URL``); unset means local execution.
        workers: Local worker processes (``HPO_WORKERS``); 0 means one per core.
        blas_coretype: OpenBLAS kernels of training processes (``HPO_BLAS_CORETYPE``): ``auto``
            (the best this CPU supports, replacing an inherited ``OPENBLAS_CORETYPE``),
            ``inherit``, or an OpenBLAS core name. Read from the environment before NumPy loads,
            see :mod:`hpo._blas`.
        queue: Queue of trial messages (``HPO_QUEUE``).
        lease_seconds: How long a worker's claim on a trial lasts without a heartbeat.
        task_time_limit: Hard time limit of one trial task on a remote worker (seconds).
        task_soft_time_limit: Soft limit (default: 60 s before the hard one).
        visibility_timeout: Redis visibility timeout (default: hard limit + 10 min); must exceed
            the hard limit, which workers check at start-up.
        reaper_interval: Seconds between two reaper passes in each worker.
        requeue_grace: A PENDING trial enqueued less than this ago is not re-sent.
        requeue_after: When the broker cannot be inspected, re-send PENDING trials older than this.
        db_pool_size: PostgreSQL connections a process keeps open (``HPO_DB_POOL_SIZE``). A worker's
            pool processes default to 1 (see :data:`WORKER_POOL`): a worker then holds at most
            ``concurrency + 1`` connections.
        db_max_overflow: Connections a process may open beyond the pool when all are in use
            (``HPO_DB_MAX_OVERFLOW``); 0 in a worker's pool processes.
        db_pool_timeout: Seconds a process waits for one of its connections to be free.
        db_prepared_statements: Let psycopg prepare statements it runs often on the server
            (``HPO_DB_PREPARED_STATEMENTS``). Set it false behind PgBouncer in transaction mode
            before 1.21, where a prepared statement lives on a server connection that the next
            transaction may not get.
        db_application_name: How PostgreSQL's ``pg_stat_activity`` names this process's
            connections (``HPO_DB_APPLICATION_NAME``): ``hpo``, ``hpo-worker`` in workers.
    """

    model_config = SettingsConfigDict(env_prefix="HPO_", extra="ignore")

    database_url: str = "sqlite:///hpo.db"
    artifacts: str | None = None
    broker_url: str | None = None
    workers: int = 0
    blas_coretype: str = "auto"
    queue: str = "hpo"
    lease_seconds: float = 60.0
    task_time_limit: float = 6 * 3600.0
    task_soft_time_limit: float | None = None
    visibility_timeout: float | None = None
    reaper_interval: float = 30.0
    requeue_grace: float = 10.0
    requeue_after: float = 900.0
    db_pool_size: int = Field(5, ge=1)
    db_max_overflow: int = Field(10, ge=0)
    db_pool_timeout: float = Field(30.0, gt=0)
    db_prepared_statements: bool = True
    db_application_name: str = "hpo"

    def time_limits(self) -> tuple[float, float, float]:
        """(soft, hard, visibility timeout) of remote trial tasks, in seconds.

        With late acknowledgement, a message still unacknowledged after Redis's visibility
        timeout is delivered again while its task still runs; so the hard limit must end a task
        before that, and the soft limit (which lets a trial record its failure) before the hard one.
        Defaults: soft = hard - 60 s, visibility = hard + 10 min.
        """
        hard = self.task_time_limit
        soft = (
            self.task_soft_time_limit
            if self.task_soft_time_limit is not None
            else max(hard - 60.0, hard * 0.9)
        )
        visibility = self.visibility_timeout if self.visibility_timeout is not None else hard + 600.0
        return soft, hard, visibility


@cache
def get_settings() -> Settings:
    """The process's settings, read once on first use (never at import time)."""
    return Settings()
