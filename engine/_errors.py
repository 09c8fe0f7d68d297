"""The engine's error root."""

from __future__ import annotations

__all__ = ["CheckpointError", "ConfigError", "DatasetError", "EngineError"]


class EngineError(Exception):
    """Base class of every error the engine raises on purpose."""


class ConfigError(EngineError, ValueError):
    """A network, optimizer or trainer was configured with an invalid value."""


class DatasetError(EngineError):
    """A dataset could not be found, read or split as asked.

    Messages name files, rows and columns but never quote the data itself (a file may hold secrets
    and the message may be stored, e.g. as a trial's failure reason).

    Attributes:
        field: The argument of :func:`~engine.load_dataset` at fault: ``path`` (the source is
            missing or malformed), ``subset``, ``val_fraction``, ``test_fraction``, ``seed``,
            ``label_column``, ``normalize``, ``kind`` or ``dtype``.
    """

    def __init__(self, message: str, *, field: str = "path") -> None:
        self.field = field
        super().__init__(message)


class CheckpointError(EngineError):
    """Bytes are not a checkpoint this engine can read, or a checkpoint does not fit its target.

    Raised for anything that is not an engine checkpoint (truncated or foreign bytes, an archive
    holding other members or pickled objects), a format version this engine does not read, and a
    checkpoint of another architecture, optimizer or training setup than the network, optimizer
    or trainer it is restored into. Nothing is modified when it is raised.
    """
