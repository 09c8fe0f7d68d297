"""Query commands: studies, status, best, trials, export, explain."""

from __future__ import annotations

import json
from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ._app import EXIT_FAILURE, EXIT_INTERRUPTED, OutputFormat, app
from ._common import DbOption, FormatOption, NameArgument, emit, open_storage
from ._console import err_console, out_console

if TYPE_CHECKING:
    from hpo.spec import StudySpec
    from hpo.storage import Storage, TrialRow

__all__ = ["best", "best_rows", "explain", "export", "status", "studies", "trials"]


def shown_state(study: Any) -> str:
    from hpo.orchestration import shown_state as shown

    return shown(study)


def _resumable() -> tuple[str, ...]:
    from hpo.storage import StudyState

    return (StudyState.INTERRUPTED, StudyState.CANCELLED, StudyState.FAILED)


def end_code(state: str) -> int:
    """The exit code of a command that followed a study to its end (the README's table)."""
    from hpo.storage import StudyState

    codes = {StudyState.COMPLETE: 0, StudyState.INTERRUPTED: EXIT_INTERRUPTED}
    return codes.get(StudyState(state), EXIT_FAILURE)


class TrialStateChoice(StrEnum):
    """The states ``hpo trials --state`` filters by (``hpo.storage.TrialState``'s, without
    importing the storage layer to build the command line)."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    FAIL = "FAIL"
    PRUNED = "PRUNED"


def _curve_summary(trial: TrialRow) -> dict[str, Any]:
    from engine import EpochRecord

    records = [EpochRecord.from_dict(c) for c in trial.curves or []]
    evaluated = [r for r in records if r.val_acc is not None]
    if not evaluated:
        return {"epochs": len(records), "final_train_acc": None, "final_val_acc": None, "best_val_acc": None}
    return {
        "epochs": len(records),
        "final_train_acc": evaluated[-1].train_acc,
        "final_val_acc": evaluated[-1].val_acc,
        "best_val_acc": max(r.val_acc for r in evaluated if r.val_acc is not None),
    }


def _compute(trial: TrialRow) -> dict[str, Any]:
    """What training the trial cost (None: not recorded, e.g. a trial that is not finished)."""
    return {"epochs_trained": trial.epochs_trained, "train_seconds": trial.train_seconds}


def _trial_row(trial: TrialRow, rank: int | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {} if rank is None else {"rank": rank}
    row.update({"trial": trial.number, "stage": trial.stage + 1})
    if rank is None:  # a ranking holds finished trials only
        row["state"] = str(trial.state)
    row["value"] = trial.value
    row.update(trial.params)
    row.update(_curve_summary(trial))
    row.update(_compute(trial))
    if trial.reason:
        row["reason"] = trial.reason
    return row


def best_rows(storage: Storage, name: str, top: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The ``top`` best trials as rows, and the study's test result."""
    from hpo.orchestration import best_trials, study_spec

    study = storage.get_study(name)
    spec = study_spec(study)
    rows = [_trial_row(t, i) for i, t in enumerate(best_trials(storage, study.id, spec, top), start=1)]
    return rows, study.test_result or {}


@app.command()
def studies(db: DbOption = None, fmt: FormatOption = OutputFormat.table) -> None:
    """List the studies in the database."""
    storage = open_storage(db)
    rows = []
    for s in storage.list_studies():
        counts = storage.counts(s.id)
        rows.append(
            {
                "name": s.name,
                "state": shown_state(s),
                "stage": s.current_stage + 1,
                "complete": counts.get("COMPLETE", 0),
                "failed": counts.get("FAIL", 0),
                "pruned": counts.get("PRUNED", 0),
                "created": str(s.created_at)[:19],
            }
        )
    emit(rows, fmt, title="studies")


@app.command()
def status(
    name: NameArgument,
    db: DbOption = None,
    fmt: FormatOption = OutputFormat.table,
    watch: Annotated[
        bool, typer.Option("--watch", help="Refresh until the study ends; exit 1 if it failed.")
    ] = False,
) -> None:
    """Stages, ranges per stage and trial counts of a study.

    With --watch it refreshes until the study ends, riding out database and broker blips, and
    exits 1 if the study failed or was cancelled.
    """
    storage = open_storage(db)
    executor = _executor_if_configured(storage.url)
    if watch:
        from ._study import follow

        # Live progress (stage, trials, best so far, ETA) on stderr while it runs, redrawn in
        # place on a terminal and one line per change otherwise; the status when it ends.
        final = follow(storage, name, executor, progress=True)
        _show_status(storage, name, fmt, None)
        raise typer.Exit(end_code(shown_state(final)))
    _show_status(storage, name, fmt, executor)


def _show_status(storage: Storage, name: str, fmt: OutputFormat, executor: Any) -> None:
    if executor is not None:
        # Anyone looking at a study also puts owed trials back on the queue (lost messages,
        # expired leases), so a study moves on even if every worker restarted.
        from hpo.orchestration import reap

        reap(storage, executor)
    study = storage.get_study(name)
    doc = _status_doc(storage, name)
    if fmt is OutputFormat.json:
        out_console().print_json(json.dumps(doc, default=str))
        return
    err_console().print(
        f"[bold]{name}[/]: {doc['state'].lower()}, stage {study.current_stage + 1}/{doc['n_stages']}"
        + (f" ({study.reason})" if study.reason else "")
        + (f"; `hpo resume {name}` continues it" if doc["state"] in _resumable() else ""),
        highlight=False,
    )
    data = doc["dataset"]
    err_console().print(
        f"data: {data['kind']}" + (f" at {data['path']}" if data["path"] else ""), highlight=False
    )
    err_console().print(
        f"compute: {doc['epochs_trained']} epochs trained, {_seconds(doc['train_seconds'])} of training",
        highlight=False,
    )
    emit(doc["stages"], fmt, title="stages and their ranges")


def _seconds(seconds: float) -> str:
    """Seconds as a person reads them: 3 significant digits, whole seconds from 100 s."""
    return f"{seconds:.0f} s" if seconds >= 100 else f"{seconds:.3g} s"


def _executor_if_configured(database_url: str) -> Any:
    from hpo import get_settings

    broker = get_settings().broker_url
    if not broker:
        return None
    from hpo._urls import check_broker_url
    from hpo.orchestration import load_executor

    return load_executor("celery", check_broker_url(broker, option="HPO_BROKER_URL"), database_url)


def _status_doc(storage: Storage, name: str) -> dict[str, Any]:
    from hpo.orchestration import study_spec
    from hpo.samplers import space_from_json

    from ._progress import range_text

    study = storage.get_study(name)
    spec = study_spec(study)
    compute = storage.compute(study.id)
    promoted = _promoted_text(storage, study.id, spec)
    stages = []
    for st in storage.stages(study.id):
        counts = storage.counts(study.id, stage=st.index)
        space = space_from_json(json.loads(st.space))
        spent = compute.stage(st.index)
        row: dict[str, Any] = {
            "stage": st.index + 1,
            "trials": st.n_trials,
            "epochs": st.epochs,
            "complete": counts.get("COMPLETE", 0),
            "failed": counts.get("FAIL", 0),
            "pruned": counts.get("PRUNED", 0),
            "running": counts.get("RUNNING", 0),
            "pending": counts.get("PENDING", 0),
            "epochs_trained": spent.epochs,
            "train_seconds": spent.seconds,
        }
        if promoted is not None:
            row["promoted"] = promoted.get(st.index, "")
        for pname in spec.search.parameters:
            row[pname] = range_text(space.get(pname))
        stages.append(row)
    return {
        "name": study.name,
        "state": shown_state(study),
        "current_stage": study.current_stage + 1,
        "n_stages": len(spec.search.stages),
        "sampler": spec.search.sampler,
        "dataset": {"kind": spec.dataset.kind, "path": spec.dataset.path},
        "reason": study.reason,
        "epochs_trained": compute.total.epochs,  # of its finished trials: see hpo.storage.Compute
        "train_seconds": compute.total.seconds,
        "stages": stages,
        "test_result": study.test_result,
    }


def _promoted_text(storage: Storage, study_id: int, spec: StudySpec) -> dict[int, str] | None:
    """Per stage, the trials that continue the previous stage's (``parent->trial`` numbers), or
    None for a study that promotes none (its status shows no such column)."""
    promotions = storage.promotions(study_id)
    if not promotions and not (spec.search.narrowing and spec.search.narrowing.promote):
        return None
    out: dict[int, list[str]] = {}
    for stage, parent, number in promotions:
        out.setdefault(stage, []).append(f"{parent}->{number}")
    return {stage: " ".join(pairs) for stage, pairs in out.items()}


@app.command()
def best(
    name: NameArgument,
    top: Annotated[
        int, typer.Option("--top", "-k", metavar="N", help="How many of the best trials to show.", min=1)
    ] = 1,
    db: DbOption = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """The best trials: parameters, validation score, stage and a summary of their curves."""
    storage = open_storage(db)
    rows, test = best_rows(storage, name, top)
    if fmt is OutputFormat.json:
        out_console().print_json(json.dumps({"best": rows, "test_result": test}, default=str))
        return
    emit(rows, fmt, title=f"best trials of {name}")
    if fmt is OutputFormat.table:
        print_test_result(test)


def print_test_result(stored: dict[str, Any]) -> None:
    """One line on stderr: the best trial's accuracy on the held-out test split."""
    from hpo.orchestration import TestResult

    test = TestResult.from_dict(stored)
    if test is not None and test.test_acc is not None:
        how = "its saved network" if test.source == "model" else "retrained, it had no saved network"
        err_console().print(
            f"best trial {test.trial_number} on the held-out test split ({test.test_size} rows): "
            f"accuracy {test.test_acc:.4f} ({how})",
            highlight=False,
        )


@app.command()
def trials(
    name: NameArgument,
    top: Annotated[
        int | None, typer.Option("--top", metavar="N", help="Only the best N finished trials.", min=1)
    ] = None,
    state: Annotated[
        TrialStateChoice | None,
        typer.Option(help="Only trials in this state.", case_sensitive=False, show_default=False),
    ] = None,
    db: DbOption = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """All trials of a study (or the best N), in trial-number order."""
    storage = open_storage(db)
    if top is not None:
        rows, _ = best_rows(storage, name, top)
        emit(rows, fmt, title=f"trials of {name}")
        return
    study = storage.get_study(name)
    states = (state.value,) if state else None
    if fmt is OutputFormat.table:  # a table is laid out from all its rows (without their curves)
        emit(
            [_trial_row(t) for t in storage.iter_trials(study.id, states=states)],
            fmt,
            title=f"trials of {name}",
        )
        return
    # JSON and CSV are streamed: a batch of trials with their curves is held at a time, not the study.
    from hpo._output import TextSink

    sink = TextSink(lambda text: typer.echo(text, nl=False))
    rows = (_trial_row(t) for t in storage.iter_trials(study.id, states=states))
    if fmt is OutputFormat.json:
        _write_json_rows(sink, rows)
    else:
        _write_csv_rows(sink, _row_columns(storage.trial_params(study.id, states=states)), rows)
    sink.flush()


def _write_json_rows(sink: Any, rows: Iterable[dict[str, Any]]) -> None:
    """The text ``emit`` prints for JSON (rich's ``print_json``: ``indent=2``, non-ASCII kept,
    one newline at the end), written row by row."""
    from hpo._output import json_array

    sink.writelines(json_array(rows, indent=2, default=str, ensure_ascii=False))
    sink.write("\n")


def _row_columns(params: Iterable[tuple[dict[str, Any], str | None]]) -> list[str]:
    """The columns ``emit`` gives the rows of :func:`_trial_row` (every key of every row, in
    first-seen order), from each trial's params and reason alone: the curves are not read twice."""
    head = ["trial", "stage", "state", "value"]
    tail = ["epochs", "final_train_acc", "final_val_acc", "best_val_acc", "epochs_trained", "train_seconds"]
    columns: dict[str, None] = {}
    for values, reason in params:
        columns.update(dict.fromkeys([*head, *values, *tail, *(["reason"] if reason else [])]))
    return list(columns)


def _write_csv_rows(sink: Any, columns: list[str], rows: Iterable[dict[str, Any]]) -> None:
    """What ``emit`` writes for CSV, row by row (nested values as JSON)."""
    import csv

    # A trial that failed between the two reads has a reason its header has no column for: left out.
    writer = csv.DictWriter(sink, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in row.items()})


@app.command()
def export(
    name: NameArgument,
    fmt: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="Output format: JSON or CSV.")
    ] = OutputFormat.json,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", metavar="FILE", help="Write to this file instead of standard output."),
    ] = None,
    db: DbOption = None,
) -> None:
    """Every trial with its parameters, score, state, reason and per-epoch curves."""
    from hpo import SpecError
    from hpo._output import TextSink, atomic_output

    if fmt is OutputFormat.table:
        raise SpecError("--format: export writes csv or json", field="--format")
    if output is None:
        sink = TextSink(lambda text: typer.echo(text, nl=False))
        _write_export(sink, open_storage(db), name, fmt)
        sink.flush()
        return
    # The output is checked (its temporary file created) before any work; written whole or not at all.
    with atomic_output(output) as file:
        sink = TextSink(lambda text: file.write(text.encode("utf-8")))
        _write_export(sink, open_storage(db), name, fmt)
        sink.flush()
    err_console().print(f"wrote {name}'s trials to {output}", highlight=False)


def _export_record(t: TrialRow) -> dict[str, Any]:
    return {
        "trial": t.number,
        "stage": t.stage + 1,
        "state": t.state,
        "value": t.value,
        "seed": t.seed,
        "attempts": t.attempts,
        **_compute(t),
        "reason": t.reason,
        "params": t.params,
        "curves": t.curves or [],
    }


def _write_export(sink: Any, storage: Storage, name: str, fmt: OutputFormat) -> None:
    """``hpo export``'s text, streamed trial by trial: the JSON document ``{"study": status,
    "trials": [...]}`` (``indent=1``) or one CSV row per trial."""
    import csv

    from hpo._output import json_array

    study = storage.get_study(name)
    records = (_export_record(t) for t in storage.iter_trials(study.id))
    if fmt is OutputFormat.json:
        head = json.dumps({"study": _status_doc(storage, name)}, default=str, indent=1)
        sink.write(head.removesuffix("\n}") + ',\n "trials": ')  # the document, open after "study"
        sink.writelines(json_array(records, indent=1, level=1, default=str))
        sink.write("\n}")
        return
    param_names = sorted({k for params, _ in storage.trial_params(study.id) for k in params})
    fields = ["trial", "stage", "state", "value", "seed", "attempts", "epochs_trained", "train_seconds"]
    fields += ["reason", *param_names, "curves"]
    writer = csv.DictWriter(sink, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in records:
        flat = {k: v for k, v in r.items() if k not in ("params", "curves")}
        flat.update(r["params"])
        flat["curves"] = json.dumps(r["curves"])
        writer.writerow(flat)


@app.command()
def explain(name: NameArgument, db: DbOption = None, fmt: FormatOption = OutputFormat.table) -> None:
    """Why each stage of a narrowing study has its ranges: the top trials, their span, the pans.

    The study's rule is re-applied to its stored stages (docs/narrowing.md states it); a stage
    whose stored ranges the rule would not give now is flagged.
    """
    from hpo.orchestration import explain_stages, study_spec

    from ._progress import range_text

    storage = open_storage(db)
    study = storage.get_study(name)
    explanations = explain_stages(storage, study.id)
    if fmt is OutputFormat.json:
        doc = [
            {
                "stage": e.stage + 1,
                "complete_trials": e.n_complete,
                "matches_stored_ranges": e.matches,
                "params": {p: r.to_dict() for p, r in e.params.items()},
            }
            for e in explanations
        ]
        out_console().print_json(json.dumps(doc, default=str))
        return
    if not explanations:
        err_console().print(f"study {name}: no stage was narrowed yet (or its sampler does not narrow)")
        return
    rule = study_spec(study).narrowing_rule()
    rows = []
    for e in explanations:
        for pname, rec in e.params.items():
            rows.append(
                {
                    "stage": e.stage + 1,
                    "parameter": pname,
                    "from": range_text(rec.old),
                    "to": range_text(rec.new),
                    "top": f"{len(rec.top_values)} of {rec.n_trials}",
                    "why": _why(rec, rule.pan_growth) + ("" if e.matches else " (stored ranges differ)"),
                }
            )
    emit(rows, fmt, title=f"narrowing of {name}")


def _why(rec: Any, pan_growth: float) -> str:
    """One parameter's narrowing in words, from its :class:`~hpo.samplers.ParamNarrowing`."""
    if rec.note:
        return rec.note
    parts = []
    for side, panned in (("low", rec.panned_low), ("high", rec.panned_high)):
        if panned:
            far = (
                f", x{pan_growth**rec.pan_streak:g} ({rec.pan_streak} in a row before)"
                if rec.pan_streak
                else ""
            )
            parts.append(f"panned {side}{far}")
    if rec.min_width_applied:
        parts.append("minimum width")
    if rec.hard_low_applied or rec.hard_high_applied:
        parts.append("cut by bounds")
    if not parts:
        parts.append(
            "kept: top trials at both edges" if rec.new == rec.old else "narrowed around the top trials"
        )
    return "; ".join(parts)
