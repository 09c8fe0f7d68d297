"""The Typer application and the one place where errors become exit codes."""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from .._errors import HPOError, SpecError
from ._console import err_console, out_console

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "OutputFormat",
    "app",
    "exit_code_for",
    "run",
]

EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class _FlagsWithoutType:
    """Help without a type column for on/off flags (Typer shows ``<bool>`` for every flag)."""

    def get_params(self, ctx: Any) -> list[Any]:
        params: list[Any] = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params


class _Command(_FlagsWithoutType, TyperCommand):
    pass


class _Group(_FlagsWithoutType, TyperGroup):
    pass


app = typer.Typer(
    name="hpo",
    help="Hyperparameter search for NumPy networks by staged range narrowing.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # a docstring's paragraphs are reflowed, not broken where wrapped
    cls=_Group,
)

# `hpo --help` lists the commands in these panels, in this order.
_PANELS = {
    "Run a study": ["submit", "resume", "validate", "cancel", "delete"],
    "Results": [
        "studies",
        "status",
        "explain",
        "best",
        "trials",
        "export",
        "plot",
        "model",
        "predict",
        "verify",
    ],
    "Workers and tools": ["worker", "train", "schema", "db"],
}


class OutputFormat(StrEnum):
    """Output formats of data commands."""

    table = "table"
    json = "json"
    csv = "csv"


def exit_code_for(exc: BaseException) -> int | None:
    """The exit code of an error hpo reports as one line, or None for a genuine bug.

    The one place where errors become exit codes: 2 for bad input (a wrong file, flag, name or
    path: nothing was written), 130 for an interrupted run, 1 for other failures. Classes are
    only looked up in modules already loaded, so classifying an error never imports NumPy.
    """
    if isinstance(exc, SpecError):
        return EXIT_BAD_INPUT
    if "hpo.orchestration" in sys.modules:
        from hpo.orchestration import LocalRunInterruptedError

        if isinstance(exc, LocalRunInterruptedError):
            return EXIT_INTERRUPTED
    if "hpo.orchestration" in sys.modules:
        from hpo.orchestration import BrokerError

        if isinstance(exc, BrokerError):
            return EXIT_FAILURE
    if "hpo.orchestration" in sys.modules:
        from hpo.orchestration import ModelNotFoundError

        if isinstance(exc, ModelNotFoundError):
            return EXIT_BAD_INPUT
    if "hpo.artifacts" in sys.modules:
        from hpo.artifacts import ArtifactStoreError

        if isinstance(exc, ArtifactStoreError):
            return EXIT_BAD_INPUT
    if "hpo.storage" in sys.modules:
        from hpo.storage import StudyExistsError, StudyNotFoundError, StudyStateError

        if isinstance(exc, StudyExistsError | StudyNotFoundError | StudyStateError):
            return EXIT_BAD_INPUT
    if "engine" in sys.modules:
        from engine import ConfigError, DatasetError, EngineError

        if isinstance(exc, ConfigError | DatasetError):
            return EXIT_BAD_INPUT
        if isinstance(exc, EngineError):
            return EXIT_FAILURE
    if isinstance(exc, HPOError):
        return EXIT_FAILURE
    return None


def _show_version(value: bool) -> None:
    if value:
        from hpo import __version__

        out_console().print(f"hpo {__version__}", highlight=False)
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print hpo's version and exit.", callback=_show_version, is_eager=True
        ),
    ] = False,
) -> None:
    """Hyperparameter search for NumPy networks by staged range narrowing."""


def _register() -> None:
    # Importing these modules registers their commands on `app`.
    from . import _model, _plot, _query, _study, _train  # noqa: F401

    order = [name for names in _PANELS.values() for name in names]
    panel = {name: title for title, names in _PANELS.items() for name in names}
    commands = [*app.registered_commands]
    for group in app.registered_groups:
        if group.typer_instance is not None:
            commands += group.typer_instance.registered_commands
            group.typer_instance.info.cls = _Group
    for info in commands:
        if info.cls in (None, TyperCommand):
            info.cls = _Command
    for info in app.registered_commands:
        name = info.name or (info.callback.__name__ if info.callback else "")
        info.rich_help_panel = panel.get(name, info.rich_help_panel)
    app.registered_commands.sort(key=lambda c: order.index(c.name or c.callback.__name__))  # type: ignore[union-attr]
    for group in app.registered_groups:
        group.rich_help_panel = panel.get(group.name or "", group.rich_help_panel)


def run() -> None:
    """Run the CLI: every error is one line on stderr and an exit code from one table.

    0 done; 1 the study failed or was cancelled, or another failure (a database down); 2 bad input
    or usage (a wrong file, flag, name, path or URL; a command that does not apply to the study's
    state); 130 interrupted. A bug is one line too, naming ``HPO_DEBUG=1``, which shows its
    traceback.
    """
    _register()
    try:
        code = app(prog_name="hpo", standalone_mode=False)  # `hpo`, also as `python -m hpo`
    except typer.TyperException as exc:  # usage: a missing argument, an unknown option, a bad value
        code = _usage_error(exc)
    except typer.Abort:  # a prompt ended by Ctrl-D or Ctrl-C
        err_console().print("aborted", highlight=False)
        code = EXIT_INTERRUPTED
    except Exception as exc:
        code = exit_code_for(exc)
        if code is None:
            if os.environ.get("HPO_DEBUG") == "1":
                raise
            code = EXIT_FAILURE
            text = f"error: internal error: {type(exc).__name__}: {exc} (HPO_DEBUG=1 shows the traceback)"
        else:
            text = f"error: {exc}"
        err_console().print(_one_line(text), markup=False, highlight=False)
    sys.exit(code if isinstance(code, int) else 0)


def _usage_error(exc: typer.TyperException) -> int:
    ctx = getattr(exc, "ctx", None)
    if type(exc).__name__ == "NoArgsIsHelpError":
        return 0  # the help was shown
    hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
    err_console().print(_one_line(f"error: {exc.format_message()}{hint}"), markup=False, highlight=False)
    return EXIT_BAD_INPUT if exc.exit_code == 2 else exc.exit_code


def _one_line(text: str, limit: int = 1000) -> str:
    """The one-line promise kept for any message: newlines folded, length bounded."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
