"""The evidence scripts (bench/search_quality.py, bench/reproduce_book.py): their arithmetic, and a
tiny end-to-end run of each method."""

from __future__ import annotations

import importlib.util
import json
import math
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


def test_stage_sizes_add_up_to_the_budget(sq: ModuleType) -> None:
    assert sq.stage_sizes(100, (0.25, 0.25, 0.25, 0.25)) == [25, 25, 25, 25]
    assert sq.stage_sizes(50, (0.4, 0.3, 0.3)) == [20, 15, 15]
    assert sq.stage_sizes(7, (0.25, 0.25, 0.25, 0.25)) == [2, 2, 2, 1]
    assert sum(sq.stage_sizes(199, sq.DEFAULT_STAGES)) == 199


def test_best_so_far_and_trials_to_reach(sq: ModuleType) -> None:
    values = [0.1, None, 0.5, 0.4, 0.8, 0.7]  # None: a failed trial
    assert sq.best_so_far(values) == [0.1, 0.1, 0.5, 0.5, 0.8, 0.8]
    assert sq.trials_to_reach(values, 0.5) == 3
    assert sq.trials_to_reach(values, 0.9) is None
    assert sq._argbest([0.2, 0.9, None, 0.9]) == 1  # ties: the earlier trial


def test_median_counts_unreached_runs_as_infinitely_many(sq: ModuleType) -> None:
    assert sq._median_or_none([10, 20, None]) == 20
    assert sq._median_or_none([10, None, None]) is None
    assert sq._median_or_none([10, 30]) == 20


def test_summary_uses_prefixes_for_random_and_own_runs_for_narrowing(sq: ModuleType) -> None:
    ramp = [i / 200 for i in range(200)]
    runs = [
        {"method": "random", "values": ramp, "tests": {"50": 0.3, "100": 0.5}},
        {"method": "narrowing", "budget": 50, "values": [0.6] * 50, "tests": {"50": 0.61}},
        {"method": "narrowing", "budget": 100, "values": [0.2] * 100, "tests": {"100": 0.21}},
    ]
    summary = sq.summarize(runs, [50, 100])
    assert summary["reference_random_best_at_100"] == ramp[99]
    rows = {(r["method"], r["budget"]): r for r in summary["table"]}
    assert rows[("random", 50)]["best_val_median"] == round(ramp[49], 4)  # its first 50 trials
    assert rows[("narrowing", 50)]["best_val_median"] == 0.6
    assert rows[("narrowing", 50)]["trials_to_reference_median"] == 1
    assert rows[("narrowing", 100)]["trials_to_reference_median"] is None  # never reached
    assert rows[("narrowing", 50)]["test_median"] == 0.61


def test_book_listing_is_the_books_format() -> None:
    rb = _load("reproduce_book")
    lines = rb.book_listing([{"value": 0.83, "lr": 0.0092, "weight_decay": 3.86e-07}])
    assert lines == ["Best-1(val acc:0.83) | lr:0.0092, weight decay:3.86e-07"]


@pytest.mark.skipif(not MNIST.is_dir(), reason="needs ../shared/data/mnist")
def test_every_method_runs_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "q.json"
    cmd = [sys.executable, "bench/search_quality.py", "--seeds", "1", "--budgets", "4", "--json", str(out)]
    cmd += ["--stages", "0.5", "0.5", "--processes", "2"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    methods = {r["method"]: r for r in result["runs"]}
    assert set(methods) == {"narrowing", "narrowing-confined", "random", "tpe", "random-wide", "tpe-wide"}
    assert all(len(r["values"]) == 4 for r in methods.values())
    narrowing = methods["narrowing"]
    assert len(narrowing["spaces"]) == 2 and narrowing["stages_of"] == [0, 0, 1, 1]
    # Confined runs never leave the declared box; the others' lr may.
    for run in (methods["narrowing-confined"], methods["random"], methods["tpe"]):
        assert all(1e-6 <= p["lr"] <= 1e-2 for p in run["params"])
    assert all(math.isfinite(t) for r in methods.values() for t in r["tests"].values() if t is not None)
