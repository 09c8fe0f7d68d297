"""Errors of the storage layer, all under :class:`hpo.HPOError`."""

from __future__ import annotations

import re
import shlex

from .._errors import HPOError

__all__ = ["StorageError", "StudyExistsError", "StudyNotFoundError", "database_error_text"]

# PostgreSQL refusing a connection to a database or as a role that does not exist (not a missing
# table, whose text says 'relation "..." does not exist' and comes after connecting).
_MISSING = re.compile(r'FATAL:\s+(?P<kind>database|role) "(?P<name>.*)" does not exist')


class StorageError(HPOError):
    """The database could not be used: unreachable, not upgraded, or an unexpected state."""


class StudyExistsError(StorageError):
    """A study of that name exists with a different spec (or an unrelated Optuna study has the name)."""


class StudyNotFoundError(StorageError):
    """No study of that name (or id) exists."""


def database_error_text(exc: BaseException, url: str | None = None) -> str:
    """The first line of a database error's own message, for a one-line report.

    SQLAlchemy's text adds the statement, its parameters and a link on further lines; the
    driver's (``exc.orig``) first line says what went wrong. Given the database's ``url``, a
    PostgreSQL database or role that does not exist gets the command that creates it (see
    :func:`create_hint`).
    """
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return text + (create_hint(text, url) if url else "")


def create_hint(text: str, url: str) -> str:
    """``"; create it with: createdb ..."`` (or ``createuser``) for a PostgreSQL error ``text``
    saying the database (or role) of ``url`` does not exist; ``""`` for any other error.

    The command connects to the URL's host and port (as its user, for ``createdb``), and never
    holds its password.
    """
    from sqlalchemy.engine import make_url

    missing = _MISSING.search(text)
    if missing is None:
        return ""
    parsed = make_url(url)
    host = parsed.host or parsed.query.get("host")  # ?host=/run/postgresql: a Unix socket
    where = ["-h", host] if isinstance(host, str) and host else []
    where += ["-p", str(parsed.port)] if parsed.port else []
    if missing["kind"] == "database":
        command = ["createdb", *where, *(["-U", parsed.username] if parsed.username else [])]
        return f"; create it with: {shlex.join([*command, missing['name']])}"
    # The role cannot connect to create itself: a superuser does it (postgres is the usual one).
    command = ["createuser", *where, "-U", "postgres", *(["--pwprompt"] if parsed.password else [])]
    return f"; a superuser can create it, e.g.: {shlex.join([*command, missing['name']])}"


class StudyStateError(StorageError):
    """The command does not apply to the study in its state (resume a complete study, cancel a
    finished one): a usage error, and nothing changed."""
