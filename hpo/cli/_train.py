"""``hpo train``: train one network from a spec file and print its learning curves."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ._app import OutputFormat, app
from ._console import err_console, out_console

__all__ = ["train"]


@app.command()
def train(
    spec_file: Annotated[
        Path, typer.Argument(metavar="FILE", help="A YAML file with dataset, model and training sections.")
    ],
    seed: Annotated[
        int | None, typer.Option(metavar="N", help="Train with this seed instead of the file's.", min=0)
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(metavar="N", help="Train this many epochs instead of training.epochs.", min=1),
    ] = None,
    fmt: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="Output format of the curves.", envvar="HPO_FORMAT")
    ] = OutputFormat.table,
) -> None:
    """Train one network and print its per-epoch train/validation curves and test accuracy."""
    from hpo.orchestration import load_data, train_network
    from hpo.spec import load_train_spec

    spec = load_train_spec(spec_file)
    if seed is not None:
        spec = spec.model_copy(update={"seed": seed})
    if epochs is not None:
        spec = spec.model_copy(update={"training": spec.training.model_copy(update={"epochs": epochs})})

    data = load_data(spec.dataset, spec.training.dtype)  # bad data paths fail before any output
    err = err_console()
    t = spec.training
    err.print(
        f"training {spec.model.hidden_sizes} {spec.model.activation} on {spec.dataset.kind}: "
        f"{t.optimizer} lr={t.lr:g} weight_decay={spec.model.weight_decay:g} "
        f"epochs={t.epochs} seed={spec.seed}",
        highlight=False,
    )
    run = train_network(spec, data=data)
    result = run.result
    # The curves only (no timings): two runs with one seed print the same output.
    rows = [{k: v for k, v in r.as_dict().items() if k != "seconds"} for r in result.history]
    test_acc = run.test_accuracy()
    if fmt is OutputFormat.json:
        doc = {
            "outcome": result.outcome.value,
            "reason": result.reason,
            "seconds": result.seconds,
            "test_acc": test_acc,
            "curves": rows,
        }
        out_console().print_json(json.dumps(doc))
    else:
        _print_curves(rows, fmt, spec.name or spec_file.stem)
    summary = f"{result.outcome.value} in {result.seconds:.2f} s ({result.steps} steps)"
    if result.reason:
        summary += f": {result.reason}"
    if result.final_val_acc is not None:
        summary += f"; final val acc {result.final_val_acc:.4f}"
    if test_acc is not None:
        summary += f"; test acc {test_acc:.4f}"
    err.print(summary, highlight=False)
    if result.outcome.value == "diverged":
        raise typer.Exit(1)


def _print_curves(rows: list[dict[str, Any]], fmt: OutputFormat, title: str) -> None:
    if fmt is OutputFormat.csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else ["epoch"])
        writer.writeheader()
        writer.writerows(rows)
        return
    table = Table("epoch", "train loss", "train acc", "val loss", "val acc", title=title)
    for r in rows:
        table.add_row(
            *(f"{v:.4f}" if isinstance(v, float) else ("-" if v is None else str(v)) for v in r.values())
        )
    out_console().print(table)
