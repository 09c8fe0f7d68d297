"""Study lifecycle commands: submit, resume, validate, schema, cancel, delete."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ._app import EXIT_FAILURE, app
from ._common import DbOption, open_storage
from ._console import err_console, out_console

__all__ = ["cancel", "delete", "resume", "schema", "submit", "validate"]

WorkersOption = Annotated[
    int | None,
    typer.Option(
        "--workers",
        "-w",
        help="Local worker processes (default: one per core).",
        envvar="HPO_WORKERS",
        min=1,
        show_default=False,
    ),
]
ProgressOption = Annotated[
    bool, typer.Option("--progress/--no-progress", help="Live progress on stderr (when it is a terminal).")
]


@app.command()
def submit(
    study_file: Annotated[Path, typer.Argument(help="The study's YAML file.")],
    db: DbOption = None,
    workers: WorkersOption = None,
    progress: ProgressOption = True,
) -> None:
    """Submit a study and run it to the end in local worker processes.

    Submitting a study whose name exists with the same spec continues it; a different spec under
    the same name is an error.
    """
    from hpo._local import default_workers
    from hpo._orchestration import submit_study
    from hpo.spec import load_study_spec

    spec = load_study_spec(study_file)  # bad input: exit 2 before anything is written
    storage = open_storage(db, create=True)
    n = workers or default_workers()
    study, created = submit_study(storage, spec, workers=n)
    err = err_console()
    if created:
        err.print(
            f"study [bold]{study.name}[/]: {spec.total_trials} trials in {len(spec.search.stages)} stages, "
            f"sampler {spec.search.sampler}, {n} local workers"
        )
    else:
        err.print(
            f"study [bold]{study.name}[/] already exists with this spec ({study.state.lower()}); "
            "nothing new written"
        )
        if study.state != "RUNNING":
            _print_best(storage, study.name)
            return
    _run(storage, study.name, n, progress)


@app.command()
def resume(
    name: Annotated[str, typer.Argument(help="Study name.")],
    db: DbOption = None,
    workers: WorkersOption = None,
    progress: ProgressOption = True,
) -> None:
    """Continue an interrupted or cancelled study."""
    from hpo._local import default_workers

    storage = open_storage(db)
    study = storage.resume_study(name)
    err_console().print(f"resuming [bold]{study.name}[/] at stage {study.current_stage + 1}")
    _run(storage, name, workers or default_workers(), progress)


def _run(storage: object, name: str, workers: int, progress: bool) -> None:
    from hpo._local import run_local
    from hpo.storage import Storage

    from ._progress import LiveProgress

    assert isinstance(storage, Storage)
    study = storage.get_study(name)
    with LiveProgress(storage) as live:
        final = run_local(storage, study, workers=workers, on_progress=live if progress else None)
    if final.state == "COMPLETE":
        err_console().print(f"study [bold]{name}[/] complete")
        _print_best(storage, name)
    else:
        err_console().print(
            f"study [bold]{name}[/] {final.state.lower()}: {final.reason or ''}", highlight=False
        )
        raise typer.Exit(EXIT_FAILURE)


def _print_best(storage: object, name: str) -> None:
    from ._app import OutputFormat
    from ._common import emit
    from ._query import best_rows, print_test_result

    rows, test = best_rows(storage, name, 5)  # type: ignore[arg-type]
    emit(rows, OutputFormat.table, title=f"best trials of {name}")
    print_test_result(test)


@app.command()
def validate(study_file: Annotated[Path, typer.Argument(help="The study's YAML file.")]) -> None:
    """Check a study file without running or writing anything."""
    from hpo.spec import load_study_spec

    spec = load_study_spec(study_file)
    err_console().print(
        f"{study_file}: ok: study {spec.name}, {spec.total_trials} trials "
        f"in {len(spec.search.stages)} stages, "
        f"parameters {', '.join(spec.search.parameters)}",
        highlight=False,
    )


@app.command()
def schema() -> None:
    """Print the JSON schema of study files (for editors and CI checks)."""
    from hpo.spec import study_json_schema

    out_console().print_json(json.dumps(study_json_schema()))


@app.command()
def cancel(name: Annotated[str, typer.Argument(help="Study name.")], db: DbOption = None) -> None:
    """Stop a study: running trials stop at their next epoch; `hpo resume` continues it."""
    storage = open_storage(db)
    storage.cancel_study(name)
    err_console().print(f"study [bold]{name}[/] cancelled")


@app.command()
def delete(
    name: Annotated[str, typer.Argument(help="Study name.")],
    db: DbOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a study, its trials and its Optuna view."""
    storage = open_storage(db)
    storage.get_study(name)  # a clear error for an unknown name, before asking
    if not yes and not typer.confirm(f"delete study {name} and all its trials?", err=True):
        raise typer.Exit(EXIT_FAILURE)
    storage.delete_study(name)
    err_console().print(f"study [bold]{name}[/] deleted")


db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(db: DbOption = None) -> None:
    """Create or migrate hpo's tables (prefix hpo_) to the latest version."""
    from hpo import get_settings
    from hpo.storage import Storage

    storage = Storage(db or get_settings().database_url)
    storage.upgrade()
    err_console().print("database is at the latest schema version")
