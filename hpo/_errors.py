"""The service's error root. The CLI maps each class to one exit code, in one place."""

from __future__ import annotations

__all__ = ["HPOError", "SpecError"]


class HPOError(Exception):
    """Base class of every error hpo raises on purpose."""


class SpecError(HPOError):
    """A study file or option is invalid. The message is one line naming the field.

    Attributes:
        field: Dotted path of the offending field (``training.lr``), or ``""`` for the file.
        line: 1-based line in the YAML file, when known.
        column: 1-based column in the YAML file, when known.
    """

    def __init__(
        self, message: str, *, field: str = "", line: int | None = None, column: int | None = None
    ) -> None:
        self.field = field
        self.line = line
        self.column = column
        super().__init__(message)
