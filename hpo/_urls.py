"""Database and broker URLs: checked before anything is written, never shown with a password.

Every problem a URL can show before a connection is tried is found here and reported as
:class:`InvalidURLError` (bad input: exit code 2), one line naming the option. Two parsers read
hpo's URLs: SQLAlchemy's (the database URL, for hpo, Optuna and Alembic) ends a password at its
FIRST ``@``; urllib's (the broker URL, for kombu and redis-py) ends the host part at the first
``/``, ``?`` or ``#`` and a password at the LAST ``@``. A user name or password holding one of
these characters is read differently by the two (and a driver then fails later on a wrong host,
port or database), so it must be percent-encoded: the checks say so.
"""

from __future__ import annotations

import re
from pathlib import Path

from ._errors import SpecError

__all__ = [
    "BROKER_FORMS",
    "DATABASE_FORMS",
    "InvalidURLError",
    "check_broker_url",
    "check_database_url",
    "check_sqlite_file",
    "redact_url",
]

DATABASE_FORMS = "postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB or sqlite:///FILE"
BROKER_FORMS = "redis://[:PASSWORD@]HOST:PORT/DB or rediss://[:PASSWORD@]HOST:PORT/DB"
_MAX_REDIS_DB = 2**31 - 1
"""Redis reads a database number as a signed 32-bit integer; the server's ``databases`` setting
(16 by default, but configurable) is the real bound, checked by the executor on connecting."""

# The parts of SCHEME://[USER[:PASSWORD]@]HOST[:PORT][/PATH?QUERY#FRAGMENT], with the user name
# and password found as SQLAlchemy finds them (user up to ':' or '/', password up to the first
# '@'), so that an '@' left in the host means the password held one.
_URL = re.compile(
    r"(?P<scheme>[^:/?#@]*)://"
    r"(?:(?P<user>[^:/]*)(?::(?P<password>[^@]*))?@)?"
    r"(?P<host>\[[^\]]*\]|[^:/?#\[\]]*)"
    r"(?::(?P<port>[^/?#]*))?"
    r"(?P<path>[/?#].*)?",
    re.DOTALL,
)
# Characters that make the parsers disagree in a user name or password (or that urllib drops):
# they must be percent-encoded. Others (':' in the password, '%', non-ASCII) read the same in both.
_NEEDS_ENCODING = re.compile(r"[@/?#\[\]\x00-\x1f\x7f]")
# Redaction: SCHEME:// (if the text starts with one), then the user name up to the first ':',
# then everything up to the LAST '@' is the password. On a malformed URL this hides too much,
# never too little.
_SCHEME = r"[A-Za-z][A-Za-z0-9+.\-]*://"
_CREDENTIALS = re.compile(rf"^(?P<head>{_SCHEME}[^:]*|(?!{_SCHEME})[^:]*):.*@", re.DOTALL)
_PASSWORD_PARAM = re.compile(r"(?P<key>[?&;]password=)[^&#;]*", re.IGNORECASE)


class InvalidURLError(SpecError):
    """A database or broker URL that is malformed or unsupported (bad input: exit code 2).

    The message is one line, ``OPTION: what is wrong``, and never contains the password.

    Attributes:
        field: The option or variable that gave the URL (``--db``, ``HPO_BROKER_URL``...).
    """

    def __init__(self, option: str, problem: str) -> None:
        super().__init__(f"{option}: {problem}", field=option)


def redact_url(url: str) -> str:
    """``url`` with its password (and any ``password=`` query value) replaced by ``***``.

    Works on any text, a URL or not, well formed or not: everything between ``SCHEME://USER:``
    and the last ``@`` is hidden. (SQLAlchemy's own rendering is not used: it ends the password
    at the first ``@`` and would show the rest of a password holding one.)
    """
    text = _CREDENTIALS.sub(r"\g<head>:***@", url, count=1)
    return _PASSWORD_PARAM.sub(r"\g<key>***", text)


def check_database_url(url: str, *, option: str = "database URL") -> str:
    """The database URL, checked and normalized, before any connection is tried.

    Accepted: ``sqlite:///FILE`` (a file: an in-memory database cannot be shared by hpo's and
    Optuna's connections) and ``postgresql+psycopg://...``. ``postgresql://`` and
    ``postgres://`` become ``postgresql+psycopg://``: psycopg (3) is the driver hpo installs,
    and SQLAlchemy 2.0 would pick psycopg2 for them.

    Args:
        url: The URL as the user gave it.
        option: How the user gave it, for the message (``--db``, ``HPO_DATABASE_URL``).

    Returns:
        The URL to use everywhere (hpo's engine, Optuna's storage, Alembic, workers).

    Raises:
        InvalidURLError: Not a URL, an unsupported database or driver, an in-memory SQLite
            database, a bad port, or a user name or password that needs percent-encoding.
    """
    parts = _split(url, option, DATABASE_FORMS)
    backend, _, driver = parts["scheme"].partition("+")
    if backend in ("postgresql", "postgres") and driver in ("", "psycopg"):
        url = "postgresql+psycopg" + url[len(parts["scheme"]) :]
    elif backend == "sqlite" and driver in ("", "pysqlite"):
        _check_sqlite_parts(url, option)
    elif backend in ("postgresql", "postgres", "sqlite"):
        raise InvalidURLError(option, f"unsupported driver {driver!r}: use {DATABASE_FORMS}")
    else:
        raise InvalidURLError(option, f"unsupported database {parts['scheme']!r}: use {DATABASE_FORMS}")
    _check_credentials(parts, option)
    _check_port(parts["port"], option)
    _check_sqlalchemy_reads(url, option)
    return url


def check_broker_url(url: str, *, option: str = "broker URL") -> str:
    """The broker URL, checked before any connection is tried.

    Only Redis is accepted (the executor inspects Redis queues to find lost messages): a host,
    a port in 1..65535 if given, and a database number (default 0). Whether the server has that
    database is only known on connecting (its ``databases`` setting, 16 by default): the
    executor's ``check()`` reports it as the same error.

    Args:
        url: The URL as the user gave it.
        option: How the user gave it, for the message (``--broker``, ``HPO_BROKER_URL``).

    Returns:
        The URL, unchanged.

    Raises:
        InvalidURLError: Not a URL, another scheme, no host, a bad port or database number, or a
            user name or password that needs percent-encoding.
    """
    parts = _split(url, option, BROKER_FORMS)
    if parts["scheme"] not in ("redis", "rediss"):
        raise InvalidURLError(option, f"unsupported broker {parts['scheme']!r}: use {BROKER_FORMS}")
    _check_credentials(parts, option)
    if not parts["host"] or parts["host"] == "[]":
        raise InvalidURLError(option, f"no host: use {BROKER_FORMS}")
    _check_port(parts["port"], option)
    path = (parts["path"] or "").split("?", 1)[0].split("#", 1)[0]
    db = path.removeprefix("/")
    if db and not (re.fullmatch(r"[0-9]+", db) and int(db) <= _MAX_REDIS_DB):
        raise InvalidURLError(
            option, f"Redis database {db!r} is not a number in 0..{_MAX_REDIS_DB} (the path /DB, e.g. /0)"
        )
    return url


def check_sqlite_file(url: str, *, option: str = "database URL", exists: bool) -> None:
    """Check that a SQLite URL's file can be used without leaving a stray file behind.

    Opening a SQLite file that does not exist creates it: a command that only reads would leave
    an empty database under a mistyped name. Does nothing for other databases.

    Args:
        url: A URL accepted by :func:`check_database_url`.
        option: How the user gave it, for the message.
        exists: The file must exist (a command that reads); else its directory must (one that
            creates the database).

    Raises:
        InvalidURLError: The file (or its directory) does not exist.
    """
    parts = _URL.fullmatch(url)
    if parts is None or not parts["scheme"].startswith("sqlite"):
        return
    path_text, _, query = (parts["path"] or "")[1:].partition("?")
    if re.search(r"(^|&)uri=", query):
        return  # a SQLite URI filename (file:...?mode=...): SQLite resolves it, not a plain path
    path = Path(path_text)
    if exists and not path.is_file():
        raise InvalidURLError(
            option, f"no SQLite database {path_text!r} (hpo submit or hpo db upgrade creates one)"
        )
    if not path.parent.is_dir():
        raise InvalidURLError(option, f"the directory of the SQLite file {path_text!r} does not exist")


def _split(url: str, option: str, forms: str) -> re.Match[str]:
    parts = _URL.fullmatch(url)
    if parts is None or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.\-]*", parts["scheme"]):
        raise InvalidURLError(option, f"not a URL: use {forms}")
    return parts


def _check_credentials(parts: re.Match[str], option: str) -> None:
    for name, raw in (("user", parts["user"]), ("password", parts["password"])):
        bad = _NEEDS_ENCODING.search(raw or "")
        if bad:
            raise _encode_error(option, name, bad[0])
    if "@" in parts["host"]:  # the password (or user name) went on past its first '@'
        raise _encode_error(option, "password", "@")


def _encode_error(option: str, name: str, char: str) -> InvalidURLError:
    return InvalidURLError(
        option, f"the {name} contains {char!r}: percent-encode it with urllib.parse.quote({name}, safe='')"
    )


def _check_port(raw: str | None, option: str) -> None:
    if not raw:
        return
    # The value is not shown unless it is a number: in a URL missing its '@', it is a password.
    if not re.fullmatch(r"[0-9]+", raw):
        raise InvalidURLError(option, "the port is not a number (HOST:PORT, PORT in 1..65535)")
    if not 1 <= int(raw) <= 65535:
        raise InvalidURLError(option, f"port {int(raw)} is not in 1..65535")


def _check_sqlite_parts(url: str, option: str) -> None:
    rest = url.partition("://")[2]  # sqlite:///FILE: the FILE comes after the third slash
    if rest and not rest.startswith(("/", "?")):
        raise InvalidURLError(
            option, "a SQLite URL has no host or user: use sqlite:///FILE (sqlite:////FILE for /FILE)"
        )
    database, _, query = rest.removeprefix("/").partition("?")
    if not database or ":memory:" in database or "mode=memory" in query:  # also file::memory:
        raise InvalidURLError(
            option,
            "an in-memory SQLite database cannot be shared by hpo's and Optuna's connections; "
            "use a file, e.g. sqlite:///hpo.db",
        )


def _check_sqlalchemy_reads(url: str, option: str) -> None:
    """SQLAlchemy must read the URL (the checks above leave only odd corners to it)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(url)
    except ArgumentError:
        raise InvalidURLError(option, f"not a URL: use {DATABASE_FORMS}") from None
    except ValueError:  # SQLAlchemy's port, which ends at '/' or '?' only, is not a number
        raise InvalidURLError(option, "the port is not a number (HOST:PORT, PORT in 1..65535)") from None
