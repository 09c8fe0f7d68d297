"""Options and helpers shared by the study commands."""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.table import Table

from ._app import OutputFormat
from ._console import err_console, out_console

if TYPE_CHECKING:
    from hpo.storage import Storage

__all__ = [
    "OUTAGE_SECONDS",
    "ArtifactsOption",
    "BrokerOption",
    "DbOption",
    "FormatOption",
    "NameArgument",
    "NewDbOption",
    "Outages",
    "ProgressOption",
    "SetOption",
    "WorkerDbOption",
    "WorkersOption",
    "check_broker_option",
    "counted",
    "emit",
    "fmt_value",
    "open_storage",
]


def _given_as(ctx: typer.Context, param: typer.CallbackParam) -> str:
    """How the user gave an option's value, for messages: its flag or its environment variable."""
    source = ctx.get_parameter_source(param.name or "")
    if source is not None and source.name == "ENVIRONMENT" and isinstance(param.envvar, str):
        return param.envvar
    return param.opts[0]


def _database_url(ctx: typer.Context, param: typer.CallbackParam, value: str | None, *, exists: bool) -> str:
    from hpo import get_settings
    from hpo._urls import check_database_url, check_sqlite_file

    option = _given_as(ctx, param)
    url = check_database_url(value or get_settings().database_url, option=option)
    check_sqlite_file(url, option=option, exists=exists)
    return url


def _existing_database(ctx: typer.Context, param: typer.CallbackParam, value: str | None) -> str:
    # Checked as the command line is read: a bad URL stops the command before it does anything.
    return _database_url(ctx, param, value, exists=True)


def _new_database(ctx: typer.Context, param: typer.CallbackParam, value: str | None) -> str:
    return _database_url(ctx, param, value, exists=False)


def _worker_database(ctx: typer.Context, param: typer.CallbackParam, value: str | None) -> str:
    # A worker's database must be one it shares with the submitter: a SQLite file missing here is
    # most often a worker on another host, and the message says what such a worker needs.
    from hpo import get_settings
    from hpo._urls import check_database_url
    from hpo.orchestration import check_database_shareable

    option = _given_as(ctx, param)
    url = check_database_url(value or get_settings().database_url, option=option)
    return check_database_shareable(url, option=option)


def check_broker_option(ctx: typer.Context, param: typer.CallbackParam, value: str | None) -> str | None:
    """The ``--broker`` option's callback: the URL checked as the command line is read."""
    if not value:
        return value
    from hpo._urls import check_broker_url

    return check_broker_url(value, option=_given_as(ctx, param))


def _db_option(callback: Callable[..., str]) -> Any:
    return typer.Option(
        "--db",
        metavar="URL",
        help="Database URL (SQLAlchemy). Default: sqlite:///hpo.db in the working directory.",
        envvar="HPO_DATABASE_URL",
        show_default=False,
        callback=callback,
    )


NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="The study's name.", show_default=False)]
"""The study a command is about (``hpo studies`` lists them)."""

DbOption = Annotated[str | None, _db_option(_existing_database)]
"""A database that must exist (a SQLite file is never created by a command that only reads)."""
NewDbOption = Annotated[str | None, _db_option(_new_database)]
"""A database that the command may create."""
WorkerDbOption = Annotated[str | None, _db_option(_worker_database)]
"""A worker's database: one it shares with the submitter (a SQLite file on this host, absolute)."""
FormatOption = Annotated[
    OutputFormat,
    typer.Option("--format", "-f", help="Output format: a table, JSON or CSV.", envvar="HPO_FORMAT"),
]
WorkersOption = Annotated[
    int | None,
    typer.Option(
        "--workers",
        "-w",
        metavar="N",
        help="Local worker processes (default: one per core).",
        envvar="HPO_WORKERS",
        min=1,
        show_default=False,
    ),
]
ProgressOption = Annotated[
    bool, typer.Option("--progress/--no-progress", help="Live progress on stderr (when it is a terminal).")
]
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY=VALUE",
        help="Set a field of the study file, e.g. --set search.trials=60 --set seed=3 (repeatable). "
        "The value is read as YAML and checked like the file; the study's stored spec includes it.",
        show_default=False,
    ),
]
ArtifactsOption = Annotated[
    str | None,
    typer.Option(
        "--artifacts",
        metavar="URL",
        help="Where the trained networks are kept: a folder (a path or file:///DIR) or "
        "s3://BUCKET/PREFIX (boto3's endpoint: AWS_ENDPOINT_URL). Default: FILE.artifacts beside "
        "a sqlite:///FILE database, else ./hpo-artifacts. Checked before anything is written.",
        envvar="HPO_ARTIFACTS",
        show_default=False,
    ),
]
BrokerOption = Annotated[
    str | None,
    typer.Option(
        "--broker",
        metavar="URL",
        help="Celery broker URL (redis:// or rediss://). With one, trials run on `hpo worker` processes.",
        envvar="HPO_BROKER_URL",
        show_default=False,
        callback=check_broker_option,
    ),
]


def open_storage(db: str | None, *, create: bool = False) -> Storage:
    """The storage at ``db`` (or the configured default).

    The embedded SQLite default is migrated automatically; any other database must have been
    upgraded with ``hpo db upgrade`` (a deliberate step on a shared server).
    """
    from hpo import get_settings
    from hpo.storage import Storage

    url = db or get_settings().database_url
    storage = Storage(url)
    if create and url.startswith("sqlite"):
        storage.upgrade()
    else:
        storage.check_schema()
    return storage


def counted(n: int, noun: str) -> str:
    """``n`` and the noun, plural unless ``n`` is 1: ``counted(1, "stage")`` is ``"1 stage"``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def fmt_value(v: Any) -> str:
    """A cell for tables: floats to 4 significant digits, None as '-'."""
    if v is None:
        return "-"
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:.4g}" if abs(v) < 1e-3 or abs(v) >= 1e4 else f"{v:.4f}".rstrip("0").rstrip(".")
    if isinstance(v, dict):
        return ", ".join(f"{k}={fmt_value(x)}" for k, x in v.items())
    return str(v)


def emit(rows: Sequence[dict[str, Any]], fmt: OutputFormat, *, title: str | None = None) -> None:
    """Write rows to stdout as a table, JSON or CSV (nested values as JSON in CSV cells)."""
    if fmt is OutputFormat.json:
        out_console().print_json(json.dumps(list(rows), default=str))
        return
    # Rows may differ (a failed trial has a reason): the columns of all of them, in first-seen order.
    columns = list(dict.fromkeys(key for row in rows for key in row))
    if fmt is OutputFormat.csv:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in row.items()})
        typer.echo(buf.getvalue(), nl=False)
        return
    table = Table(*columns, title=title)
    for row in rows:
        table.add_row(*(fmt_value(row.get(c)) for c in columns))
    out_console().print(table)


T = TypeVar("T")

OUTAGE_SECONDS = 600.0
"""How long ``--wait`` and ``status --watch`` keep retrying a database or broker that does not
answer before they give up (exit code 1): long enough for a restart or a failover."""


class Outages:
    """Runs the polling steps of a command that follows a study, riding out database and broker
    blips: a step that fails to reach either is retried with backoff (0.1 s doubling to 5 s), with
    one line on stderr when the outage starts and one when it ends.
    """

    def __init__(self, give_up: float = OUTAGE_SECONDS) -> None:
        self.give_up = give_up
        self._since: float | None = None
        self._delay = 0.1

    def run(self, step: Callable[[], T]) -> T | None:
        """``step()``, or None after a failed attempt (the caller polls again).

        Raises:
            StorageError, BrokerError: The outage lasted longer than ``give_up`` seconds.
        """
        from hpo.orchestration import BrokerError
        from hpo.storage import StorageError

        try:
            value = step()
        except (StorageError, BrokerError) as exc:
            now = time.monotonic()
            if self._since is None:
                self._since = now
                err_console().print(f"warning: {exc}; retrying", markup=False, highlight=False)
            elif now - self._since > self.give_up:
                raise
            time.sleep(self._delay)
            self._delay = min(self._delay * 2, 5.0)
            return None
        if self._since is not None:
            lasted = time.monotonic() - self._since
            err_console().print(f"reconnected after {lasted:.0f} s", highlight=False)
            self._since, self._delay = None, 0.1
        return value
