"""The engine's error root."""

from __future__ import annotations

__all__ = ["ConfigError", "DatasetError", "EngineError"]


class EngineError(Exception):
    """Base class of every error the engine raises on purpose."""


class ConfigError(EngineError, ValueError):
    """A network, optimizer or trainer was configured with an invalid value."""


class DatasetError(EngineError):
    """A dataset could not be found, read or split as asked."""
