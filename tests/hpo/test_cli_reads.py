"""``hpo trials`` and ``hpo export`` stream their rows: the same bytes as when they built the whole
text in memory, and no read of every trial at once."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from hpo.cli._query import _export_record, _status_doc, _trial_row
from hpo.orchestration import submit_study
from hpo.spec import StudySpec
from hpo.storage import Storage, TrialOutcome, TrialRow
from tests.cli import run_hpo

SPEC = {
    "name": "streamed",
    "seed": 0,
    "dataset": {"kind": "digits", "subset": 100},
    "model": {"hidden_sizes": [8]},
    "training": {"epochs": 3},
    "search": {
        "sampler": "random",
        "trials": 6,
        "parameters": {
            "lr": {"type": "float", "low": 1e-3, "high": 1.0, "log": True},
            "activation": {"type": "categorical", "choices": ["relu", "tanh"]},
        },
    },
}


@pytest.fixture(scope="module")
def study_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A study of 6 trials: COMPLETE (one with epochs not evaluated), FAIL with a non-ASCII
    reason, PRUNED, and one left PENDING."""
    db = f"sqlite:///{tmp_path_factory.mktemp('reads') / 'hpo.db'}"
    storage = Storage(db)
    storage.upgrade()
    study, _ = submit_study(storage, StudySpec.model_validate(SPEC))
    for i, t in enumerate(storage.trials(study.id)[:5]):
        claimed = storage.claim_with_study(t.id, "w", 60)
        assert claimed is not None
        curves = [
            {
                "epoch": e,
                "train_loss": 1 / e,
                "train_acc": 0.3 * e,
                "val_loss": 0.9,
                "val_acc": 0.1 * e + i / 100,
            }
            | {"seconds": 0.01}
            for e in (1, 2, 3)
        ]
        if i == 1:  # evaluated every other epoch: no accuracies on epoch 2
            curves[1] |= {"train_acc": None, "val_loss": None, "val_acc": None}
        state, reason = (
            ("COMPLETE", None)
            if i < 3
            else ("FAIL", "diverged: loss → ∞ (ü)")
            if i == 3
            else ("PRUNED", "pruned at 2")
        )
        outcome = TrialOutcome(
            state, curves[-1]["val_acc"], reason, curves, {3: 0.5}, epochs_trained=3, train_seconds=0.03
        )
        assert storage.finish(t.id, "w", outcome, attempt=claimed[0].attempts)
    return db


# -- the text the commands printed when they built it whole (hpo before it streamed) -------------


def _printed_json(value: Any) -> str:
    """What ``emit``'s JSON (rich's ``print_json`` to a pipe) printed."""
    out = io.StringIO()
    Console(file=out, soft_wrap=True, width=200).print_json(json.dumps(value, default=str))
    return out.getvalue()


def _printed_csv(rows: list[dict[str, Any]]) -> str:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in row.items()})
    return buf.getvalue()


def _export_text(storage: Storage, name: str, fmt: str) -> str:
    # The records are _export_record's (what streaming changed is how they are written).
    records = [_export_record(t) for t in storage.trials(storage.get_study(name).id)]
    if fmt == "json":
        return json.dumps({"study": _status_doc(storage, name), "trials": records}, default=str, indent=1)
    params = sorted({k for r in records for k in r["params"]})
    head = [
        "trial",
        "stage",
        "state",
        "value",
        "seed",
        "attempts",
        "epochs_trained",
        "train_seconds",
        "reason",
    ]
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow([*head, *params, "curves"])
    out.writerows(
        [*(r[k] for k in head), *(r["params"][p] for p in params), json.dumps(r["curves"])] for r in records
    )
    return buf.getvalue()


@pytest.mark.parametrize("state", [None, "FAIL", "RUNNING"])
def test_trials_json_and_csv_are_the_bytes_of_before(study_db: str, state: str | None) -> None:
    storage = Storage(study_db)
    study = storage.get_study("streamed")
    rows = [_trial_row(t) for t in storage.trials(study.id, states=None if state is None else (state,))]
    if state == "RUNNING":
        assert rows == []  # an empty listing: "[]" and a CSV of no columns
    flags = [] if state is None else ["--state", state]
    for fmt, expected in (("json", _printed_json(rows)), ("csv", _printed_csv(rows))):
        proc = run_hpo("trials", "streamed", "-f", fmt, *flags, "--db", study_db)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == expected, (fmt, state)


def test_export_json_and_csv_are_the_bytes_of_before(study_db: str, tmp_path: Path) -> None:
    storage = Storage(study_db)
    for fmt, to_file in (("json", False), ("json", True), ("csv", True)):
        expected = _export_text(storage, "streamed", fmt)
        out = tmp_path / f"t.{fmt}"
        to = ["-o", str(out)] if to_file else []
        proc = run_hpo("export", "streamed", "-f", fmt, *to, "--db", study_db)
        assert proc.returncode == 0, proc.stderr
        assert (out.read_bytes() if to_file else proc.stdout.encode("utf-8")) == expected.encode("utf-8"), fmt
    doc = json.loads(_export_text(storage, "streamed", "json"))
    assert [t["state"] for t in doc["trials"]] == ["COMPLETE"] * 3 + ["FAIL", "PRUNED", "PENDING"]


def test_trials_and_export_never_read_every_trial_at_once(
    study_db: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The commands read the trials through the streamed reads (a batch at a time: see
    tests/hpo/storage/test_reads_at_scale.py), not ``Storage.trials``, which holds them all."""
    from typer.testing import CliRunner

    from hpo.cli._app import app

    def whole(*_args: Any, **_kwargs: Any) -> list[TrialRow]:
        raise AssertionError("Storage.trials read every trial at once")

    monkeypatch.setattr(Storage, "trials", whole)
    batches: list[int] = []
    streamed = Storage.iter_trials

    def iter_trials(self: Storage, *args: Any, **kwargs: Any) -> Any:
        batches.append(kwargs.get("batch", 0))
        return streamed(self, *args, **kwargs)

    monkeypatch.setattr(Storage, "iter_trials", iter_trials)
    runner = CliRunner()
    for args in (
        ["trials", "streamed", "-f", "json"],
        ["trials", "streamed", "-f", "csv", "--state", "FAIL"],
        ["export", "streamed", "-f", "json"],
        ["export", "streamed", "-f", "csv", "-o", str(tmp_path / "t.csv")],
    ):
        result = runner.invoke(app, [*args, "--db", study_db])
        assert result.exit_code == 0, (args, result.output, result.exception)
    assert len(batches) == 4
