"""bench/reads.py, tiny: the study it builds with the workers' own statements, and its reads."""

from __future__ import annotations

import importlib.util
import sys

from hpo.storage import Storage
from tests.cli import ROOT


def _reads_module():
    spec = importlib.util.spec_from_file_location("bench_reads", ROOT / "bench" / "reads.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_reads"] = module
    spec.loader.exec_module(module)
    return module


def test_build_makes_a_complete_study_and_the_optuna_view_equals_it(postgres_url: str) -> None:
    reads = _reads_module()
    storage = Storage(postgres_url)
    try:
        name, seconds = reads.build(postgres_url, 30)
        assert seconds is not None  # built, not reused
        study = storage.get_study(name)
        assert study.state == "COMPLETE"
        trials = storage.trials(study.id)
        assert len(trials) == 30 and all(t.state == "COMPLETE" and len(t.curves) == 50 for t in trials)
        assert reads.build(postgres_url, 30) == (name, None)  # kept, and reused
        assert reads.optuna_view_equal(postgres_url, name)["equal"] is True
    finally:
        storage.delete_study("bench-reads-30")
