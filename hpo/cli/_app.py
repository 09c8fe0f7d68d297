"""The Typer application and the one place where errors become exit codes."""

from __future__ import annotations

import sys
from enum import StrEnum

import typer

from .._errors import HPOError, SpecError
from ._console import err_console

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

app = typer.Typer(
    name="hpo",
    help="Hyperparameter search for NumPy networks by staged range narrowing.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


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
    if "hpo._local" in sys.modules:
        from hpo._local import LocalRunInterruptedError

        if isinstance(exc, LocalRunInterruptedError):
            return EXIT_INTERRUPTED
    if "hpo._executor" in sys.modules:
        from hpo._executor import BrokerError

        if isinstance(exc, BrokerError):
            return EXIT_FAILURE
    if "hpo.storage" in sys.modules:
        from hpo.storage import StudyExistsError, StudyNotFoundError

        if isinstance(exc, StudyExistsError | StudyNotFoundError):
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


@app.callback()
def _root() -> None:
    """Hyperparameter search for NumPy networks by staged range narrowing."""


def _register() -> None:
    # Importing these modules registers their commands on `app`.
    from . import _plot, _query, _study, _train  # noqa: F401


def run() -> None:
    """Run the CLI, turning hpo's own errors into one line on stderr and an exit code.

    Usage errors are click's (exit code 2, with usage); a bug keeps its traceback.
    """
    _register()
    try:
        app()
    except Exception as exc:
        code = exit_code_for(exc)
        if code is None:
            raise
        err_console().print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(code)
