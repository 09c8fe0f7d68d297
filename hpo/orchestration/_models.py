"""The networks a study kept: a trial's saved model, predictions with it, and the retrain check.

Every COMPLETE trial's final checkpoint (network, optimizer, position, and the data's
:class:`engine.Preprocessing`) is an artifact of the study's store, its id on the trial's row
(``model``). ``hpo model`` exports its network, ``hpo predict`` predicts with it on new rows
normalized with the stored train-split statistics, and ``hpo verify`` retrains the winner from its
seed to check that the stored result is what that seed gives.
"""

from __future__ import annotations

import csv
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

import engine

from .._errors import HPOError, SpecError
from ..spec import DatasetSpec, StudySpec
from ..storage import Storage, StudyRow, TrialRow, TrialState
from ._studies import best_trials, objective_value, study_spec
from ._training import train_network

__all__ = [
    "ModelNotFoundError",
    "Verification",
    "model_file",
    "pick_trial",
    "predict_rows",
    "read_features",
    "saved_model",
    "verify_winner",
]


class ModelNotFoundError(HPOError):
    """The trial asked for has no saved model (none finished, it failed, or the study predates
    kept models): bad input, exit code 2."""


def pick_trial(storage: Storage, study: StudyRow, number: int | None = None) -> TrialRow:
    """Trial ``number`` of ``study``, or its best trial when ``number`` is None.

    Raises:
        ModelNotFoundError: There is no such trial, or no finished one to be the best.
    """
    if number is None:
        best = best_trials(storage, study.id, study_spec(study), 1)
        if not best:
            raise ModelNotFoundError(f"study {study.name!r} has no COMPLETE trial yet")
        return best[0]
    found = [t for t in storage.trials(study.id) if t.number == number]
    if not found:
        raise ModelNotFoundError(
            f"study {study.name!r} has no trial {number} (see `hpo trials {study.name}`)"
        )
    return found[0]


def saved_model(study: StudyRow, trial: TrialRow) -> engine.Checkpoint:
    """The final checkpoint ``trial`` saved, read from the study's artifact store.

    Raises:
        ModelNotFoundError: The trial saved none (not COMPLETE, the store failed then, or the
            study was made before hpo kept models).
        ArtifactStoreError: The store cannot be read or no longer holds the artifact.
        CheckpointError: The artifact is not a checkpoint.
    """
    from ..artifacts import open_store

    where = f"trial {trial.number} of study {study.name!r}"
    if not study.artifacts:
        raise ModelNotFoundError(f"{where} has no saved model: the study was made before hpo kept models")
    if not trial.model:
        why = "it is not COMPLETE" if trial.state != TrialState.COMPLETE else "the store failed when it ended"
        raise ModelNotFoundError(f"{where} has no saved model ({trial.state}: {why})")
    return engine.Checkpoint.from_bytes(open_store(study.artifacts).get(trial.model))


def model_file(checkpoint: engine.Checkpoint) -> bytes:
    """The bytes ``hpo model`` writes: the network alone with its data's preprocessing
    (:func:`engine.save_model`; :func:`engine.load_model` reads them)."""
    return engine.save_model(checkpoint.build_network(), checkpoint.preprocessing)


def read_features(path: Path, features: int, dataset: DatasetSpec | None = None) -> NDArray[np.float64]:
    """The rows of ``data.csv`` or ``data.npz`` to predict, as float64 ``(n, features)``.

    An npz file holds them as ``x`` or ``X`` (or as its only array). A CSV file holds numbers,
    optionally under a header row; a row of one column more than ``features`` is the study's own
    format (``dataset``'s label column is dropped), so a file the study trained on predicts too.

    Raises:
        SpecError: The file is missing, unreadable, or holds rows of another width.
    """
    if not path.is_file():
        raise SpecError(f"DATA: {path} is not a file", field="DATA")
    if path.suffix.lower() == ".npz":
        x = _npz_features(path)
    elif path.name.lower().endswith((".csv", ".csv.gz")):
        x = _csv_features(path, features, dataset)
    else:
        raise SpecError(f"DATA: {path}: use a .csv or .npz file", field="DATA")
    x = x.reshape(x.shape[0], -1) if x.ndim > 2 else x
    if x.ndim != 2 or x.shape[1] != features:
        raise SpecError(
            f"DATA: {path}: rows of {features} features expected, got shape {x.shape}", field="DATA"
        )
    if not np.isfinite(x).all():
        raise SpecError(f"DATA: {path}: a feature value is not finite", field="DATA")
    return x


def _npz_features(path: Path) -> NDArray[np.float64]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            key = next((k for k in ("x", "X") if k in names), names[0] if len(names) == 1 else None)
            if key is None:
                raise SpecError(f"DATA: {path} needs an array x (it has {len(names)} others)", field="DATA")
            arr = archive[key]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise SpecError(f"DATA: cannot read npz file {path}: {exc}", field="DATA") from None
    if arr.dtype.kind not in "biuf" or arr.ndim == 0:
        raise SpecError(f"DATA: {path}: '{key}' must be a numeric array, got {arr.dtype}", field="DATA")
    return np.asarray(arr, dtype=np.float64)


def _csv_features(path: Path, features: int, dataset: DatasetSpec | None) -> NDArray[np.float64]:
    import gzip

    try:
        opener: Any = gzip.open if path.name.lower().endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8-sig", newline="") as f:
            rows = [[c.strip() for c in row] for row in csv.reader(f) if any(c.strip() for c in row)]
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as exc:
        raise SpecError(f"DATA: cannot read csv file {path}: {exc}", field="DATA") from None
    if not rows:
        raise SpecError(f"DATA: csv file {path} is empty", field="DATA")
    width = len(rows[0])
    drop = _label_index(rows[0], width, features, dataset)
    # A header row names the columns: a cell that is not a number, the label's aside (labels
    # may be text), or the label column given by its name.
    header = isinstance(dataset.label_column, str) if dataset is not None and drop is not None else False
    header = header or any(not _is_number(c) for j, c in enumerate(rows[0]) if j != drop)
    body = rows[1:] if header else rows
    if not body:
        raise SpecError(f"DATA: csv file {path} has no data rows", field="DATA")
    try:
        values = [[float(c) for j, c in enumerate(row) if j != drop] for row in body if len(row) == width]
    except ValueError:
        raise SpecError(f"DATA: csv file {path}: a feature value is not a number", field="DATA") from None
    if len(values) != len(body):
        raise SpecError(f"DATA: csv file {path}: rows have different numbers of columns", field="DATA")
    return np.array(values, dtype=np.float64)


def _label_index(first: list[str], width: int, features: int, dataset: DatasetSpec | None) -> int | None:
    """The column of the study's labels in a file of its own format (one column more than the
    network's features), or None."""
    if width != features + 1 or dataset is None or dataset.kind != "csv":
        return None
    label = dataset.label_column
    if isinstance(label, str):
        return first.index(label) if label in first else None
    return label % width


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def predict_rows(checkpoint: engine.Checkpoint, x: NDArray[np.floating]) -> list[dict[str, Any]]:
    """One row per input row: its index, the predicted class (its label in the data) and the
    network's probability of that class. Features are normalized with the statistics stored
    with the model (the train split's), never recomputed from ``x``."""
    net = checkpoint.build_network()
    prep = checkpoint.preprocessing
    inputs = x if prep is None else prep.apply(x, net.dtype)
    proba = net.predict_proba(inputs)
    classes = proba.argmax(axis=1)
    label = (lambda i: int(i)) if prep is None else prep.label
    return [
        {"row": i, "class": label(int(c)), "probability": float(proba[i, c])} for i, c in enumerate(classes)
    ]


@dataclass(frozen=True)
class Verification:
    """What retraining the winner from its seed gave, against what the study stored.

    Attributes:
        trial_number: The trial retrained (the best one).
        value: Its stored objective value.
        retrained_value: The retraining's objective value.
        test_acc: The stored test accuracy (the saved model's, or the end-of-study retrain's).
        retrained_test_acc: The retraining's test accuracy.
    """

    trial_number: int
    value: float | None
    retrained_value: float | None
    test_acc: float | None
    retrained_test_acc: float | None

    @property
    def value_equal(self) -> bool:
        """The retraining reproduced the stored objective value exactly."""
        return _same(self.value, self.retrained_value)

    @property
    def test_equal(self) -> bool:
        """The retraining reproduced the stored test accuracy exactly."""
        return _same(self.test_acc, self.retrained_test_acc)


def _same(a: float | None, b: float | None) -> bool:
    return a == b or (a is not None and b is not None and math.isnan(a) and math.isnan(b))


def verify_winner(storage: Storage, name: str) -> Verification:
    """Retrain the study's best trial from its seed and compare with what the study stored.

    Raises:
        StudyNotFoundError: No study is called ``name``.
        ModelNotFoundError: It has no COMPLETE trial.
    """
    study = storage.get_study(name)
    spec: StudySpec = study_spec(study)
    trial = pick_trial(storage, study)
    run = train_network(spec.trial_spec(trial.params, trial.stage, seed=trial.seed))
    stored = study.test_result or {}
    return Verification(
        trial_number=trial.number,
        value=trial.value,
        retrained_value=objective_value(spec, run.result.history),
        test_acc=stored.get("test_acc") if stored.get("trial_number") == trial.number else None,
        retrained_test_acc=run.test_accuracy(),
    )
