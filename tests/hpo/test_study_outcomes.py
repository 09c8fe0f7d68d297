"""Study outcomes beyond the happy path: the book's MNIST study, pruning, failures, limits, cancel."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from hpo.storage import Storage
from tests.cli import ROOT, start_hpo, wait_for_complete
from tests.cli import run_hpo as _hpo
from tests.invariants import check_study

MNIST = ROOT.parent / "shared" / "data" / "mnist"


def _study(tmp_path: Path, body: str, name: str = "s") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nseed: 3\ndataset: {{kind: digits, subset: 500, val_fraction: 0.25}}\n"
        f"model: {{hidden_sizes: [32], activation: relu}}\n" + body
    )
    return path


@pytest.mark.skipif(not MNIST.is_dir(), reason="needs ../shared/data/mnist")
def test_book_study_end_to_end_best_plot_and_optuna_agree(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'hpo.db'}"
    proc = _hpo("submit", "examples/mnist-book.yaml", "--db", db, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    storage = Storage(db)
    facts = check_study(storage, "mnist-book", rerun=1)
    best = json.loads(_hpo("best", "mnist-book", "-k", "3", "-f", "json", "--db", db).stdout)["best"]
    ostudy = optuna.load_study(study_name="mnist-book", storage=db)
    assert ostudy.best_value == best[0]["value"]
    assert ostudy.best_trial.params == {k: best[0][k] for k in ("lr", "weight_decay")}
    # the lr range starts at the book's 1e-6..1e-2 and may pan past 1e-2, never past bounds
    spaces = [json.loads(s.space) for s in storage.stages(facts["study"].id)]
    assert len(spaces) == 3
    png = tmp_path / "book.png"
    assert _hpo("plot", "mnist-book", "-o", str(png), "--db", db).returncode == 0
    assert png.stat().st_size > 10_000
    test = facts["study"].test_result
    # Scored from the winner's saved network; retraining it from its seed gives the same (I3).
    assert test["test_size"] == 2000 and test["source"] == "model"
    verify = _hpo("verify", "mnist-book", "--db", db)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert verify.stdout.count(": equal\n") == 2


def test_pruned_trials_are_recorded_and_mirrored(tmp_path: Path) -> None:
    body = """\
training: {optimizer: sgd, epochs: 12, batch_size: 50}
search:
  sampler: random
  stages: [{trials: 24}]
  parameters:
    lr: {type: float, low: 1.0e-5, high: 1.0, log: true}
pruner: {kind: median, warmup_epochs: 1}
"""
    db = f"sqlite:///{tmp_path / 'hpo.db'}"
    proc = _hpo("submit", str(_study(tmp_path, body)), "--db", db, "-w", "2", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    facts = check_study(Storage(db), "s", rerun=1)
    pruned = [t for t in facts["trials"] if t.state == "PRUNED"]
    assert pruned, "a median pruner over lr 1e-5..1 prunes the hopeless trials"
    assert all(len(t.curves) < 12 and t.reason and "pruned" in t.reason for t in pruned)
    # Each trial trained the epochs its curves hold: all 12, or fewer when pruned.
    assert all(t.epochs_trained == len(t.curves) for t in facts["trials"])
    assert all(t.epochs_trained == 12 for t in facts["trials"] if t.state == "COMPLETE")
    assert all(t.train_seconds and t.train_seconds > 0 for t in facts["trials"])


def test_diverging_trials_fail_with_reason_and_the_study_stops_past_the_limit(tmp_path: Path) -> None:
    body = """\
training: {optimizer: sgd, epochs: 5, batch_size: 50}
search:
  sampler: random
  stages: [{trials: 30}]
  parameters:
    lr: {type: float, low: 1.0e+8, high: 1.0e+10, log: true}
limits: {max_failed_trials: 3}
"""
    db = f"sqlite:///{tmp_path / 'hpo.db'}"
    proc = _hpo("submit", str(_study(tmp_path, body)), "--db", db, "-w", "2", "--no-progress")
    assert proc.returncode == 1
    storage = Storage(db)
    study = storage.get_study("s")
    assert study.state == "FAILED" and "max_failed_trials=3" in (study.reason or "")
    failed = storage.trials(study.id, states=("FAIL",))
    assert len(failed) >= 4
    assert all("non-finite" in (t.reason or "") for t in failed)
    # The epoch a trial diverged in is not complete: it trained the epochs before it.
    assert all(t.epochs_trained == len(t.curves or []) < 5 for t in failed)
    assert all(t.value is None for t in failed)  # never a NaN stored as a score
    assert storage.counts(study.id).get("RUNNING", 0) == 0


def test_trial_time_limit_fails_the_trial_with_its_reason(tmp_path: Path) -> None:
    body = """\
training: {optimizer: sgd, epochs: 100000, batch_size: 10}
search:
  sampler: random
  stages: [{trials: 2}]
  parameters:
    lr: {type: float, low: 1.0e-3, high: 1.0e-1, log: true}
limits: {trial_time_limit: 0.5, max_failed_trials: 5}
"""
    db = f"sqlite:///{tmp_path / 'hpo.db'}"
    proc = _hpo("submit", str(_study(tmp_path, body)), "--db", db, "-w", "2", "--no-progress")
    storage = Storage(db)
    study = storage.get_study("s")
    trials = storage.trials(study.id)
    assert [t.state for t in trials] == ["FAIL", "FAIL"]
    assert all("time limit" in (t.reason or "") for t in trials)
    # Trained up to the limit, in whole epochs before the one it was stopped in.
    assert all(t.train_seconds and t.train_seconds >= 0.5 for t in trials)
    assert all(t.epochs_trained == len(t.curves or []) for t in trials)
    # No trial completed: the study has no result, so it failed (exit code 1), and says why.
    assert proc.returncode == 1, proc.stderr
    assert study.state == "FAILED" and (study.reason or "").startswith(
        "no trial completed (2 failed, 0 pruned)"
    )
    assert "time limit" in (study.reason or "")


def test_cancel_stops_a_running_study_and_resume_finishes_it(tmp_path: Path) -> None:
    body = """\
training: {optimizer: sgd, epochs: 300, batch_size: 10}
search:
  sampler: random
  stages: [{trials: 16}]
  parameters:
    lr: {type: float, low: 1.0e-3, high: 1.0e-1, log: true}
"""
    db = f"sqlite:///{tmp_path / 'hpo.db'}"
    path = _study(tmp_path, body)
    runner = start_hpo("submit", str(path), "--db", db, "-w", "2", "--no-progress")
    storage = Storage(db)
    wait_for_complete(db, "s", 2)
    assert _hpo("cancel", "s", "--db", db).returncode == 0
    _, err = runner.communicate(timeout=60)
    assert runner.returncode == 1, err  # the run ends, reporting the cancellation
    study = storage.get_study("s")
    assert study.state == "CANCELLED"
    assert storage.counts(study.id).get("RUNNING", 0) == 0
    assert _hpo("resume", "s", "--db", db, "-w", "2", "--no-progress").returncode == 0
    check_study(storage, "s", rerun=1)
