"""Settings: flags, then ``HPO_*`` environment variables, then these defaults."""

from __future__ import annotations

from functools import cache

from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "get_settings"]


class Settings(BaseSettings):
    """hpo's configuration, read from ``HPO_*`` environment variables.

    Attributes:
        database_url: SQLAlchemy URL of the results database (``HPO_DATABASE_URL``).
        broker_url: Celery broker URL (``HPO_BROKER_URL``); unset means local execution.
        workers: Local worker processes (``HPO_WORKERS``); 0 means one per core.
        blas_coretype: OpenBLAS kernels of training processes (``HPO_BLAS_CORETYPE``): ``auto``
            (the best this CPU supports, replacing an inherited ``OPENBLAS_CORETYPE``),
            ``inherit``, or an OpenBLAS core name. Read from the environment before NumPy loads,
            see :mod:`hpo._blas`.
    """

    model_config = SettingsConfigDict(env_prefix="HPO_", extra="ignore")

    database_url: str = "sqlite:///hpo.db"
    broker_url: str | None = None
    workers: int = 0
    blas_coretype: str = "auto"


@cache
def get_settings() -> Settings:
    """The process's settings, read once on first use (never at import time)."""
    return Settings()
