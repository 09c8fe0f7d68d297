"""Errors of the storage layer, all under :class:`hpo.HPOError`."""

from __future__ import annotations

from .._errors import HPOError

__all__ = ["StorageError", "StudyExistsError", "StudyNotFoundError"]


class StorageError(HPOError):
    """The database could not be used: unreachable, not upgraded, or an unexpected state."""


class StudyExistsError(StorageError):
    """A study of that name exists with a different spec (or an unrelated Optuna study has the name)."""


class StudyNotFoundError(StorageError):
    """No study of that name (or id) exists."""
