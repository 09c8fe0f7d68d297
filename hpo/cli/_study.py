"""Study lifecycle commands: submit, resume, validate, schema, cancel, delete; db upgrade and repair."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ._app import EXIT_FAILURE, app
from ._common import (
    ArtifactsOption,
    BrokerOption,
    DbOption,
    NameArgument,
    NewDbOption,
    Outages,
    ProgressOption,
    SetOption,
    WorkerDbOption,
    WorkersOption,
    counted,
    open_storage,
)
from ._console import err_console, out_console

__all__ = ["cancel", "db_repair", "db_upgrade", "delete", "resume", "schema", "submit", "validate"]

POLL_SECONDS = 0.05
"""How often ``--wait``/``--watch`` read a remote study's state."""
DISPLAY_SECONDS = 0.25
"""How often they redraw its progress."""


@app.command()
def submit(
    study_file: Annotated[
        Path, typer.Argument(metavar="FILE", help="The study's YAML file (- reads standard input).")
    ],
    db: NewDbOption = None,
    workers: WorkersOption = None,
    progress: ProgressOption = True,
    broker: BrokerOption = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="With a broker: follow the study until it ends.")
    ] = False,
    overrides: SetOption = None,
    artifacts: ArtifactsOption = None,
) -> None:
    """Submit a study. Without a broker it runs now in local worker processes; with one, its trials
    go to the queue and the command returns at once (or follows it with --wait).

    Submitting a study whose name exists with the same spec continues it; a different spec under
    the same name is an error.
    """
    from hpo.orchestration import check_artifact_store, check_study_data, default_workers, submit_study
    from hpo.spec import load_study_file
    from hpo.storage import StudyState

    loaded = load_study_file(study_file, overrides or ())  # bad input: exit 2 before anything is written
    spec = loaded.spec
    if broker:
        _check_data_if_here(loaded)
        _submit_remote(spec, db, broker, workers, wait, progress, artifacts)
        return
    check_study_data(loaded)  # bad data too: the study is never left half-made under its name
    store = check_artifact_store(_url(db), artifacts)  # an unwritable store: exit 2, nothing written
    storage = open_storage(db, create=True)
    n = workers or default_workers()
    study, created = submit_study(storage, spec, artifacts=store)
    err = err_console()
    if created:
        err.print(
            f"study [bold]{study.name}[/]: {counted(spec.total_trials, 'trial')} in "
            f"{counted(len(spec.search.stages), 'stage')}, sampler {spec.search.sampler}, "
            f"{counted(n, 'local worker')}"
        )
    else:
        err.print(
            f"study [bold]{study.name}[/] already exists with this spec ({study.state.lower()}); "
            "nothing new written",
            highlight=False,
        )
        if study.state == StudyState.INTERRUPTED:
            storage.resume_study(study.name)  # submitting it again continues an interrupted run
        elif study.state != StudyState.RUNNING:
            _report_end(storage, study)
            return
    _run(storage, study.name, n, progress)


def _check_data_if_here(loaded: object) -> None:
    """In broker mode, check the data when this host has it too (a file missing here may exist
    where the workers run: then the workers' first trial finds out, and fails the study)."""
    from pathlib import Path

    from hpo.orchestration import check_study_data
    from hpo.spec import SpecFile

    assert isinstance(loaded, SpecFile)
    path = loaded.spec.dataset.path
    if path is None or Path(path).exists():
        check_study_data(loaded)
    else:
        err_console().print(
            f"note: dataset.path {path} is not on this host; the workers check it", highlight=False
        )


def _url(db: str | None) -> str:
    from hpo import get_settings

    return db or get_settings().database_url


def _submit_remote(
    spec: object,
    db: str | None,
    broker: str,
    workers: int | None,
    wait: bool,
    progress: bool,
    artifacts: str | None,
) -> None:
    from hpo._urls import redact_url
    from hpo.orchestration import check_artifact_store, dispatch_trials, load_executor, reap, submit_study
    from hpo.spec import StudySpec
    from hpo.storage import TrialState

    assert isinstance(spec, StudySpec)
    url = _url(db)
    executor = load_executor("celery", broker, url)
    executor.check()  # Redis down: one clear line, and nothing written anywhere
    store = check_artifact_store(url, artifacts)  # so is a store the workers could not write
    storage = open_storage(url, create=True)
    study, created = submit_study(storage, spec, queue=executor.queue, artifacts=store)
    err = err_console()
    if created:
        dispatch_trials(
            storage, executor, [t.id for t in storage.trials(study.id, states=(TrialState.PENDING,))]
        )
        err.print(
            f"study [bold]{study.name}[/]: {counted(spec.total_trials, 'trial')} in "
            f"{counted(len(spec.search.stages), 'stage')}, queued on {redact_url(broker)}",
            highlight=False,
        )
    else:
        reap(storage, executor)  # re-send whatever the broker lost
        err.print(
            f"study [bold]{study.name}[/] already exists with this spec ({study.state.lower()}); "
            "nothing new written",
            highlight=False,
        )
    out_console().print(study.name, highlight=False)
    if not wait:
        err.print(f"follow it with: hpo status {study.name} --watch", highlight=False)
        return
    _watch(storage, study.name, executor, progress)


def _watch(storage: object, name: str, executor: object, progress: bool) -> None:
    """Follow a study until it ends (:func:`follow`), then report how it ended."""
    _report_end(storage, follow(storage, name, executor, progress))


def follow(storage: object, name: str, executor: object, progress: bool) -> Any:
    """Follow a study until it ends, reaping now and then (with a broker), with live progress on
    stderr; database and broker blips are ridden out (:class:`~hpo.cli._common.Outages`).

    Returns:
        The study as it ended (its :func:`~hpo._local.shown_state` is no longer ``RUNNING``).
    """
    import math
    import time

    from hpo import get_settings
    from hpo.orchestration import Progress, reap, shown_state
    from hpo.storage import Storage, StudyRow, StudyState

    from ._progress import LiveProgress

    assert isinstance(storage, Storage)
    settings = get_settings()
    start = last_reap = time.perf_counter()
    last_shown = -math.inf
    outages = Outages()

    def poll(live: LiveProgress) -> StudyRow:
        nonlocal last_shown, last_reap
        study = storage.get_study(name)
        # The state is polled often (the command returns soon after the study ends), the
        # display is redrawn less often.
        ended = shown_state(study) != StudyState.RUNNING
        if progress and (ended or time.perf_counter() - last_shown >= DISPLAY_SECONDS):
            last_shown = time.perf_counter()
            counts = storage.counts(study.id)
            stage_counts = storage.counts(study.id, stage=study.current_stage)
            live(Progress(study, counts, stage_counts, time.perf_counter() - start, workers_alive=-1))
        due = time.perf_counter() - last_reap > settings.reaper_interval
        if executor is not None and study.state == StudyState.RUNNING and due:
            last_reap = time.perf_counter()
            reap(storage, executor, grace=settings.requeue_grace, requeue_after=settings.requeue_after)  # type: ignore[arg-type]
        return study

    with LiveProgress(storage) as live:
        while True:
            study = outages.run(lambda: poll(live))
            if study is not None and shown_state(study) != StudyState.RUNNING:
                return study
            time.sleep(POLL_SECONDS)


@app.command()
def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency", "-c", help="Pool processes (default: one per core).", envvar="HPO_WORKERS", min=1
        ),
    ] = None,
    queues: Annotated[
        str | None, typer.Option("--queues", "-Q", help="Queues to consume (default: hpo).")
    ] = None,
    loglevel: Annotated[str, typer.Option("--loglevel", "-l", help="Celery log level.")] = "info",
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            "-n",
            help="Node name in flower and `celery inspect`, unique per worker (default: hpo-PID@HOST; "
            "%h, %n, %d expand to the host's name, short name, domain).",
        ),
    ] = None,
    db: WorkerDbOption = None,
    broker: BrokerOption = None,
) -> None:
    """Start a Celery worker that runs trials (BLAS pinned to one thread per pool process)."""
    import contextlib
    import os

    from hpo import get_settings
    from hpo._blas import blas_environ
    from hpo._settings import WORKER_POOL
    from hpo.orchestration import BrokerError, default_workers, load_executor
    from hpo.storage import Storage

    settings = get_settings()
    broker = broker or settings.broker_url
    if not broker:
        raise typer.BadParameter("a worker needs a broker: --broker or HPO_BROKER_URL", param_hint="--broker")
    url = db or settings.database_url  # checked by the option: a database this host shares
    executor = load_executor("celery", broker, url)
    # Built (and --name checked) before connecting: bad input is said before anything is tried.
    argv = executor.worker_command(
        concurrency=concurrency or default_workers(), queues=queues, loglevel=loglevel, name=name
    )
    # Refuse to start on a database it cannot use (unreachable, refused, schema behind): a worker
    # that starts anyway takes messages and can only drop them.
    Storage(url).check_schema()
    with contextlib.suppress(BrokerError):  # Redis down: the worker waits for it, but a Redis
        executor.check()  # database the server lacks is bad input, said now, not retried forever
    env = blas_environ(threads=1)
    env.update(HPO_DATABASE_URL=url, HPO_BROKER_URL=broker)
    for key, value in WORKER_POOL.items():  # one connection per pool process, unless set
        env.setdefault(key, value)
    # exec: the worker keeps this process's PID, which its default node name carries.
    os.execvpe(argv[0], argv, env)


@app.command()
def resume(
    name: NameArgument,
    db: DbOption = None,
    workers: WorkersOption = None,
    progress: ProgressOption = True,
    broker: BrokerOption = None,
    local: Annotated[
        bool, typer.Option("--local", help="Run a study submitted to a broker here, in local processes.")
    ] = False,
    wait: Annotated[
        bool, typer.Option("--wait", help="With a broker: follow the study until it ends.")
    ] = False,
) -> None:
    """Continue an interrupted, cancelled or failed study where it was submitted: in local processes,
    or on its broker queue again (a study submitted with --broker never runs here unless --local).
    """
    from hpo import SpecError, get_settings
    from hpo.orchestration import default_workers

    storage = open_storage(db)
    queue = storage.get_study(name).queue
    if queue is not None and not local:
        broker = broker or get_settings().broker_url
        if not broker:
            raise SpecError(
                f"--broker: study {name} runs on the queue {queue!r}: give its broker (--broker or "
                "HPO_BROKER_URL) to queue it there again, or --local to run it here",
                field="--broker",
            )
        _resume_remote(storage, name, broker, queue, wait, progress)
        return
    study = storage.resume_study(name)
    err_console().print(f"resuming [bold]{study.name}[/] at stage {study.current_stage + 1}")
    _run(storage, name, workers or default_workers(), progress)


def _resume_remote(storage: object, name: str, broker: str, queue: str, wait: bool, progress: bool) -> None:
    from hpo._urls import redact_url
    from hpo.orchestration import load_executor, reap
    from hpo.storage import Storage

    assert isinstance(storage, Storage)
    executor = load_executor("celery", broker, storage.url, queue=queue)
    executor.check()  # before the study is set running again
    study = storage.resume_study(name)
    sent = reap(storage, executor, grace=0.0)  # every owed trial of it goes on its queue now
    err_console().print(
        f"resuming [bold]{study.name}[/] at stage {study.current_stage + 1}: {len(sent)} trials queued "
        f"on {queue!r} at {redact_url(broker)}",
        highlight=False,
    )
    if wait:
        _watch(storage, name, executor, progress)
    else:
        err_console().print(f"follow it with: hpo status {name} --watch", highlight=False)


def _run(storage: object, name: str, workers: int, progress: bool) -> None:
    from hpo.orchestration import run_local
    from hpo.storage import Storage

    from ._progress import LiveProgress

    assert isinstance(storage, Storage)
    study = storage.get_study(name)
    with LiveProgress(storage) as live:
        final = run_local(storage, study, workers=workers, on_progress=live if progress else None)
    _report_end(storage, final)


def _report_end(storage: object, study: object) -> None:
    """The best trials when a study completed; otherwise why it ended, and its exit code (1 for a
    failed or cancelled study, 130 for an interrupted one)."""
    from hpo.storage import StudyRow, StudyState

    from ._query import end_code, shown_state

    assert isinstance(study, StudyRow)
    if study.state == StudyState.COMPLETE:
        err_console().print(f"study [bold]{study.name}[/] complete")
        _print_best(storage, study.name)
        return
    state = shown_state(study)
    err_console().print(
        f"study [bold]{study.name}[/] {state.lower()}: {study.reason or ''}; "
        f"`hpo resume {study.name}` continues it",
        highlight=False,
    )
    raise typer.Exit(end_code(state))


def _print_best(storage: object, name: str) -> None:
    from ._app import OutputFormat
    from ._common import emit
    from ._query import best_rows, print_test_result

    rows, test = best_rows(storage, name, 5)  # type: ignore[arg-type]
    emit(rows, OutputFormat.table, title=f"best trials of {name}")
    print_test_result(test)


@app.command()
def validate(
    study_file: Annotated[
        Path, typer.Argument(metavar="FILE", help="The study's YAML file (- reads standard input).")
    ],
    data: Annotated[
        bool,
        typer.Option(
            "--data/--no-data",
            help="Also load the data and check that the network fits in memory (--no-data: the file "
            "only, e.g. where the data lives on the workers' hosts).",
        ),
    ] = True,
    overrides: SetOption = None,
) -> None:
    """Check a study file, and its data, without running or writing anything."""
    from hpo.orchestration import check_study_data
    from hpo.spec import load_study_file

    loaded = load_study_file(study_file, overrides or ())
    spec = loaded.spec
    summary = ""
    if data:
        split = check_study_data(loaded)
        summary = (
            f"; data {split.train.x.shape[0]}/{split.val.x.shape[0]}/{split.test.x.shape[0]} "
            f"train/val/test rows, {split.input_size} features, {split.num_classes} classes"
        )
    err_console().print(
        f"{loaded.source}: ok: study {spec.name}, {counted(spec.total_trials, 'trial')} "
        f"in {counted(len(spec.search.stages), 'stage')}, "
        f"parameters {', '.join(spec.search.parameters)}{summary}",
        highlight=False,
    )


@app.command()
def schema() -> None:
    """Print the JSON schema of study files (for editors and CI checks)."""
    from hpo.spec import study_json_schema

    out_console().print_json(json.dumps(study_json_schema()))


@app.command()
def cancel(name: NameArgument, db: DbOption = None) -> None:
    """Stop a study: running trials stop at their next epoch; `hpo resume` continues it."""
    storage = open_storage(db)
    storage.cancel_study(name)  # a finished study: one line, exit 2, and nothing changes
    err_console().print(f"study [bold]{name}[/] cancelled; `hpo resume {name}` continues it")


@app.command()
def delete(
    name: NameArgument,
    db: DbOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a study, its trials, its Optuna view and its trained networks."""
    from hpo.orchestration import delete_study

    storage = open_storage(db)
    storage.get_study(name)  # a clear error for an unknown name, before asking
    if not yes:
        import sys

        from hpo import SpecError

        if not sys.stdin.isatty():  # nobody to answer: a script must say so
            raise SpecError(f"--yes: deleting study {name} needs confirmation: pass --yes", field="--yes")
        if not typer.confirm(f"delete study {name} and all its trials?", err=True):
            raise typer.Exit(EXIT_FAILURE)
    deleted = delete_study(storage, name)
    err = err_console()
    err.print(f"study [bold]{name}[/] deleted ({deleted.removed} artifacts removed)")
    if deleted.left:
        shown = ", ".join(deleted.left[:5]) + (", ..." if len(deleted.left) > 5 else "")
        err.print(
            f"warning: {len(deleted.left)} artifacts of study {name} were left in {deleted.store}: "
            f"{shown} ({deleted.reason})",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(db: NewDbOption = None) -> None:
    """Create or migrate hpo's tables (prefix hpo_) to the latest version."""
    from hpo import get_settings
    from hpo.storage import Storage

    storage = Storage(db or get_settings().database_url)
    result = storage.upgrade()
    # What was created or migrated, and where (the password hidden); markup off: URLs hold '['.
    err_console().print(result.message, markup=False, highlight=False)


@db_app.command("repair")
def db_repair(
    name: Annotated[
        str | None,
        typer.Argument(metavar="NAME", help="The study to repair (default: all).", show_default=False),
    ] = None,
    db: DbOption = None,
) -> None:
    """Write again what a study's Optuna view is missing (its Optuna study, finished trials)."""
    storage = open_storage(db)
    studies = [storage.get_study(name)] if name is not None else storage.list_studies()
    if not studies:
        err_console().print("no studies: nothing to repair", highlight=False)
    for study in studies:
        written = storage.sync(study.id)
        done = f"{written} trial{'' if written == 1 else 's'} re-mirrored" if written else "nothing to repair"
        # One line per study as it is repaired; markup off: a name may hold '['.
        err_console().print(f"{study.name}: {done}", markup=False, highlight=False)
