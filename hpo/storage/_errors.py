"""Errors of the storage layer, all under :class:`hpo.HPOError`."""

from __future__ import annotations

from .._errors import HPOError

__all__ = ["StorageError", "StudyExistsError", "StudyNotFoundError", "database_error_text"]


class StorageError(HPOError):
    """The database could not be used: unreachable, not upgraded, or an unexpected state."""


class StudyExistsError(StorageError):
    """A study of that name exists with a different spec (or an unrelated Optuna study has the name)."""


class StudyNotFoundError(StorageError):
    """No study of that name (or id) exists."""


def database_error_text(exc: BaseException) -> str:
    """The first line of a database error's own message, for a one-line report.

    SQLAlchemy's text adds the statement, its parameters and a link on further lines; the
    driver's (``exc.orig``) first line says what went wrong.
    """
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


class StudyStateError(StorageError):
    """The command does not apply to the study in its state (resume a complete study, cancel a
    finished one): a usage error, and nothing changed."""
