"""``hpo train`` end to end, in a subprocess as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.cli import run_hpo as _hpo


def test_train_example_prints_curves_and_test_accuracy() -> None:
    proc = _hpo("train", "examples/train-digits.yaml", "-f", "json", "--epochs", "8")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)  # data alone on stdout
    assert doc["outcome"] == "completed"
    assert [row["epoch"] for row in doc["curves"]] == list(range(1, 9))
    assert doc["curves"][-1]["val_acc"] > 0.85
    assert doc["test_acc"] > 0.85
    assert "test acc" in proc.stderr  # diagnostics on stderr


def test_train_is_reproducible() -> None:
    runs = [
        json.loads(_hpo("train", "examples/train-digits.yaml", "-f", "json", "--epochs", "3").stdout)
        for _ in range(2)
    ]
    assert runs[0]["curves"] == runs[1]["curves"]


def test_bad_spec_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset:\n  kind: digits\ntraining:\n  lr: -0.1\n")
    proc = _hpo("train", str(bad))
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip() == f"error: {bad}:4:7: training.lr: Input should be greater than 0"


def test_missing_dataset_directory_is_bad_input(tmp_path: Path) -> None:
    spec = tmp_path / "mnist.yaml"
    spec.write_text(f"dataset: {{kind: mnist, path: {tmp_path / 'nowhere'}}}\n")
    proc = _hpo("train", str(spec))
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "nowhere" in proc.stderr


def test_importing_hpo_loads_nothing_heavy() -> None:
    heavy = "('numpy', 'sqlalchemy', 'celery', 'optuna')"
    code = f"import sys, hpo, hpo.cli; print(sorted(m for m in {heavy} if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"
