"""Synthetic trials (``synthetic:``): every step of a real trial but the training, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpo.orchestration import study_spec
from hpo.orchestration._synthetic import SyntheticRun, synthetic_score
from hpo.spec import StudySpec
from hpo.storage import Storage
from tests.cli import run_hpo

STUDY = """\
name: syn
seed: 3
dataset: {kind: digits}
training: {epochs: 4}
search:
  stages: [{trials: 10}, {trials: 8, epochs: 6}]
  parameters:
    lr: {type: float, low: 1.0e-4, high: 1.0, log: true}
    weight_decay: {type: float, low: 1.0e-8, high: 1.0e-2, log: true}
    optimizer: {type: categorical, choices: [sgd, adam]}
synthetic: {epoch_seconds: 0.001}
"""


def _spec(**synthetic: float) -> StudySpec:
    return StudySpec.model_validate(
        {
            "name": "s",
            "dataset": {"kind": "digits"},
            "search": {
                "stages": [{"trials": 2, "epochs": 3}],
                "parameters": {"lr": {"type": "float", "low": 1e-4, "high": 1.0, "log": True}},
            },
            "synthetic": synthetic,
        }
    )


def test_the_score_peaks_in_the_middle_of_the_first_ranges_on_their_log_scale() -> None:
    spec = _spec()
    assert synthetic_score(spec, {"lr": 1e-2}) == pytest.approx(0.9)
    assert synthetic_score(spec, {"lr": 1e-4}) == pytest.approx(0.1)
    assert synthetic_score(spec, {"lr": 1.0}) == pytest.approx(0.1)
    assert synthetic_score(spec, {"lr": 1e-3}) == pytest.approx(0.7)  # a quarter of the way


def test_a_run_reports_every_epoch_and_stops_when_its_callback_says() -> None:
    seen: list[int] = []
    run = SyntheticRun(
        _spec(), {"lr": 1e-2}, 5, seed=1, callback=lambda r: seen.append(r.epoch) or r.epoch == 3
    )
    result = run.fit()
    assert seen == [1, 2, 3] and result.outcome.value == "stopped" and len(result.history) == 3
    again = SyntheticRun(_spec(), {"lr": 1e-2}, 5, seed=1, callback=lambda r: False).fit()
    assert again.outcome.value == "completed" and [r.epoch for r in again.history] == [1, 2, 3, 4, 5]
    assert again.history[:3] == [  # the same seed, the same curve (but for the timings)
        type(r)(r.epoch, r.train_loss, r.train_acc, r.val_loss, r.val_acc, h.seconds)
        for r, h in zip(result.history, again.history, strict=False)
    ]
    other = SyntheticRun(_spec(), {"lr": 1e-2}, 5, seed=2, callback=lambda r: False).fit()
    assert other.history[-1].val_acc != again.history[-1].val_acc  # the noise is the trial's own


def test_a_synthetic_study_runs_locally_and_keeps_no_network(tmp_path: Path) -> None:
    path = tmp_path / "syn.yaml"
    path.write_text(STUDY)
    db = f"sqlite:///{tmp_path / 'hpo.db'}"
    proc = run_hpo("submit", str(path), "--db", db, "--workers", "2", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    storage = Storage(db)
    study = storage.get_study("syn")
    assert study.state == "COMPLETE"
    spec = study_spec(study)
    rows = storage.trials(study.id)
    assert [t.number for t in sorted(rows, key=lambda t: t.number)] == list(range(18))
    for t in rows:
        epochs = spec.stage_epochs(t.stage)
        assert t.state == "COMPLETE" and t.epochs_trained == epochs and len(t.curves or []) == epochs
        rerun = SyntheticRun(spec, t.params, epochs, t.seed, lambda _r: False).fit()
        assert rerun.history[-1].val_acc == t.value  # I3: the value is its parameters' and seed's
        assert t.model is None
    assert study.test_result["error"].startswith("synthetic trials train no network")
    assert not [
        p for p in tmp_path.rglob("*") if p.is_file() and "trial" in p.name
    ]  # no checkpoint, no model
    ranges = [json.loads(s.space) for s in storage.stages(study.id)]
    assert ranges[0] != ranges[1]  # narrowed around the best, as a real study
