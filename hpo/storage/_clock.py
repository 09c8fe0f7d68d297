"""The database's clock: every time hpo writes or compares is computed inside the SQL statement.

Workers on different hosts disagree about the time; a lease written with one host's clock and
judged with another's steals running trials, or keeps a dead worker's trial for too long. So no
timestamp comes from Python: :func:`db_now` is the database server's current time, plus an
offset in seconds, as a SQL expression.

- PostgreSQL: ``now()``, the start of the current transaction. hpo's transactions are short and
  their statements run back to back, and one transaction sees one time: the reaper's two
  statements (fail at the cap, requeue the rest) judge every lease by the same instant, and a stage's
  ``finished_at`` equals its study's ``updated_at``. (``clock_timestamp()`` would move between the
  rows of one statement, ``statement_timestamp()`` between the statements of one transaction.)
- SQLite: ``strftime('%Y-%m-%d %H:%M:%f', 'now', ...)``, padded to the fixed-width text that
  SQLAlchemy's SQLite ``DateTime`` stores (``YYYY-MM-DD HH:MM:SS.ffffff``, naive UTC, see
  :class:`~hpo.storage._models.UTCDateTime`), so text comparisons with stored values stay correct
  and values read back parse as aware UTC datetimes. ``'now'`` is the same for a whole statement,
  at millisecond resolution. It is the clock of the host running the statement: a SQLite file is
  shared by processes of one host only, which share its clock.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from ._models import UTCDateTime

__all__ = ["db_now"]


class db_now(FunctionElement[datetime]):  # noqa: N801 (a SQL function, named like one)
    """The database's current time (UTC), plus ``seconds`` if given (a number or a bind parameter).

    Example: ``sa.update(trials).values(lease_expires_at=db_now(sa.bindparam("lease")))``.
    """

    type = UTCDateTime()
    inherit_cache = True

    def __init__(self, seconds: Any = None) -> None:
        super().__init__(*([] if seconds is None else [sa.cast(seconds, sa.Float)]))


def _offset(element: db_now, compiler: SQLCompiler, **kw: Any) -> str | None:
    clauses = list(element.clauses)
    return compiler.process(clauses[0], **kw) if clauses else None


@compiles(db_now, "postgresql")
def _postgresql(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    offset = _offset(element, compiler, **kw)
    return "now()" if offset is None else f"(now() + make_interval(secs => {offset}))"


@compiles(db_now, "sqlite")
def _sqlite(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    # %f is SS.SSS: three more digits make SQLAlchemy's microseconds. The offset is a modifier
    # '+N.NNN seconds' (SQLite's date modifiers take fractional seconds).
    offset = _offset(element, compiler, **kw)
    modifier = "" if offset is None else f", printf('%+.3f seconds', {offset})"
    return f"(strftime('%Y-%m-%d %H:%M:%f', 'now'{modifier}) || '000')"


@compiles(db_now)
def _other(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    raise sa.exc.CompileError(f"db_now() is not defined for {compiler.dialect.name}")
