"""The evidence scripts (bench/search_quality.py, bench/reproduce_book.py): their arithmetic, and a
tiny end-to-end run of each method."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.cli import ROOT

MNIST = ROOT.parent / "shared" / "data" / "mnist"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def sq() -> ModuleType:
    return _load("search_quality")


def test_importing_the_scripts_changes_no_environment() -> None:
    # BLAS settings leaked into this process's environment would reach the workers later tests
    # start, and their results would stop matching reruns here bit for bit (I3).
    import os

    before = dict(os.environ)
    _load("search_quality")
    _load("reproduce_book")
    assert dict(os.environ) == before


def test_stages_take_equal_shares_of_the_budget(sq: ModuleType) -> None:
    from bench._quality_tasks import stages_for

    assert stages_for(5000, 50, "equal") == [{"trials": 25, "epochs": 50}] * 4
    halving = stages_for(5000, 50, "halving")
    assert [s["epochs"] for s in halving] == [6, 12, 25, 50]
    assert [s["trials"] for s in halving] == [208, 104, 50, 25]
    assert all(s["trials"] * s["epochs"] <= 1250 for s in halving)  # never past the stage's share
    assert stages_for(40, 50, "halving")[-1] == {"trials": 2, "epochs": 50}  # at least 2 trials


def test_curve_reads_budgets_off_cumulative_epochs(sq: ModuleType) -> None:
    trials = [
        {"epochs": 10, "value": 0.5, "test": 0.4},
        {"epochs": 3, "value": None},  # pruned: its epochs count, it has no value
        {"epochs": 10, "value": 0.7, "test": 0.6},
        {"epochs": 10, "value": 0.6, "test": 0.9},
    ]
    points = sq.curve(trials)
    assert points == [(10, 0.5, 0.4), (23, 0.7, 0.6)]
    assert sq.at_budget(points, 9) == (None, None)
    assert sq.at_budget(points, 22) == (0.5, 0.4)
    assert sq.at_budget(points, 33) == (0.7, 0.6)  # the winner's test accuracy, not the best test
    assert sq.epochs_to_reach(points, 0.7) == 23 and sq.epochs_to_reach(points, 0.8) is None


def test_ranks_share_ties(sq: ModuleType) -> None:
    assert sq.ranks({"a": 0.9, "b": 0.8, "c": 0.9, "d": 0.1}) == {"a": 1.5, "b": 3, "c": 1.5, "d": 4}


def test_summary_reads_optuna_runs_at_each_budget_and_narrowing_runs_whole(sq: ModuleType) -> None:
    from bench._quality_tasks import TASKS

    task = dataclasses.replace(TASKS["wine"], epochs=10, trials=4)  # budgets 10, 20, 40 epochs
    ramp = [{"epochs": 10, "value": v, "test": v} for v in (0.1, 0.2, 0.3, 0.4)]
    runs = []
    for seed in (0, 1):
        runs.append({"box": "user", "method": "random", "seed": seed, "trials": ramp})
        for b in task.budgets():
            trials = [{"epochs": b, "value": 0.35}]
            runs.append({"box": "user", "method": "narrowing", "seed": seed, "budget": b,
                         "trials": trials, "winner": {"test": 0.3}})  # fmt: skip
    rows = {(r["method"], r["budget"]): r for r in sq.summarize(task, runs)["table"]}
    assert rows[("random", 10)]["val"][1] == 0.1 and rows[("random", 40)]["val"][1] == 0.4
    assert rows[("narrowing", 20)]["val"][1] == 0.35 and rows[("narrowing", 20)]["test"][1] == 0.3
    assert rows[("narrowing", 20)]["rank"] == 1 and rows[("random", 40)]["rank"] == 1
    reach = rows[("narrowing", 40)]["reach"]
    assert reach["target"] == 0.4 and reach["epochs"] is None  # 0.35 never reaches random's 0.4
    assert rows[("random", 40)]["reach"]["epochs"] == 40


def test_book_listing_is_the_books_format() -> None:
    rb = _load("reproduce_book")
    lines = rb.book_listing([{"value": 0.83, "lr": 0.0092, "weight_decay": 3.86e-07}])
    assert lines == ["Best-1(val acc:0.83) | lr:0.0092, weight decay:3.86e-07"]


def test_every_method_runs_end_to_end(tmp_path: Path) -> None:
    # wine: scikit-learn's bundled data, so the test needs nothing outside the repository.
    out, figure = tmp_path / "q.json", tmp_path / "q.png"
    cmd = [sys.executable, "bench/search_quality.py", "--task", "wine", "--seeds", "1", "--trials", "4"]
    cmd += ["--out", str(out), "--figure", str(figure), "--processes", "2"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    from bench._quality_tasks import METHODS

    runs = result["runs"]
    assert {r["method"] for r in runs} == set(METHODS) - {"cmaes"}  # wine has categorical parameters
    task_budget = 4 * 40
    for r in runs:
        spent = sum(t["epochs"] for t in r["trials"])
        if "budget" in r:  # narrowing: one run per budget, never past it
            assert spent <= r["budget"] and r["winner"]["test"] is not None
        else:  # Optuna: until the full budget is spent (the last trial may run past it)
            assert task_budget <= spent < task_budget + 40
    pruned = [t for r in runs if r["method"] == "random-sha" for t in r["trials"] if t["value"] is None]
    assert all(t["epochs"] < 40 for t in pruned)
    assert {row["box"] for row in result["summary"]["table"]} == {"user", "low"}
    assert figure.stat().st_size > 10_000
    report = subprocess.run(
        [sys.executable, "-c", f"from bench._quality_report import report; from pathlib import Path; "
         f"print(report([Path({str(out)!r})]))"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr
    assert "Average rank across tasks" in report.stdout and "| wine |" in report.stdout
