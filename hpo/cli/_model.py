"""The networks a study kept: ``hpo model``, ``hpo predict`` and ``hpo verify``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._app import EXIT_FAILURE, OutputFormat, app
from ._common import DbOption, FormatOption, NameArgument, emit, fmt_value, open_storage
from ._console import err_console

__all__ = ["model", "predict", "verify"]

TrialOption = Annotated[
    int | None,
    typer.Option(
        "--trial", "-t", metavar="N", help="This trial's network instead of the best trial's.", min=0
    ),
]


@app.command()
def model(
    name: NameArgument,
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", metavar="FILE", help="Where to write the network (.npz).", show_default=False
        ),
    ],
    trial: TrialOption = None,
    db: DbOption = None,
) -> None:
    """Write the trained network of the best trial (or trial N) to an `.npz` file.

    The file holds the network and the feature normalization it was trained with; Python reads
    it with `engine.load_model(data)` (the network) and `engine.Checkpoint.from_bytes(data)
    .preprocessing.apply(x)` (the normalization). No pickle is involved.
    """
    from hpo._output import atomic_output
    from hpo.orchestration import model_file, pick_trial, saved_model

    storage = open_storage(db)
    study = storage.get_study(name)
    with atomic_output(output, "--output") as file:  # a bad path fails before the store is read
        row = pick_trial(storage, study, trial)
        data = model_file(saved_model(study, row))
        file.write(data)
    err_console().print(
        f"trial {row.number} of {name} (value {fmt_value(row.value)}): {output} ({len(data)} bytes)",
        highlight=False,
    )


@app.command()
def predict(
    name: NameArgument,
    data: Annotated[
        Path, typer.Argument(metavar="DATA", help="Rows to predict: a .csv or .npz file.", show_default=False)
    ],
    trial: TrialOption = None,
    db: DbOption = None,
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Predict the class of every row of DATA with the best trial's (or trial N's) network.

    DATA is a CSV file of numbers (a header row is allowed; a label column, as in the study's own
    CSV file, is ignored) or an `.npz` file with an array `x`. The rows are normalized with the
    statistics of the study's train split, stored with the network. One output row per input
    row: its index, the predicted class (as the training data labelled it) and its probability.
    """
    from hpo.orchestration import pick_trial, predict_rows, read_features, saved_model, study_spec

    storage = open_storage(db)
    study = storage.get_study(name)
    row = pick_trial(storage, study, trial)
    checkpoint = saved_model(study, row)
    features = int(checkpoint.network["input_size"])
    x = read_features(data, features, study_spec(study).dataset)
    emit(predict_rows(checkpoint, x), fmt, title=f"predictions of trial {row.number} of {name}")


@app.command()
def verify(name: NameArgument, db: DbOption = None) -> None:
    """Retrain the best trial from its seed and compare with what the study stored.

    One line for the objective value and one for the test accuracy; exit code 0 when both are
    equal, 1 otherwise.
    """
    from hpo.orchestration import verify_winner

    storage = open_storage(db)
    result = verify_winner(storage, name)
    lines = [
        ("value", result.value, result.retrained_value, result.value_equal),
        ("test accuracy", result.test_acc, result.retrained_test_acc, result.test_equal),
    ]
    for what, stored, again, equal in lines:
        verdict = "equal" if equal else "DIFFERENT"
        number = result.trial_number
        typer.echo(f"trial {number} {what}: stored {_exact(stored)}, retrained {_exact(again)}: {verdict}")
    if not (result.value_equal and result.test_equal):
        raise typer.Exit(EXIT_FAILURE)


def _exact(value: float | None) -> str:
    """Every digit: two values that differ in the last bit must not print alike."""
    return "-" if value is None else repr(value)
