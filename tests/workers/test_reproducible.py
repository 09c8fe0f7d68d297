"""Same results whatever the worker count (issue 14): the same study run by 1, 2 and 8 real worker
processes, and by local processes on SQLite, stores the same trials, bit for bit.

Real Redis, real PostgreSQL, real `hpo worker` processes (tests/workers/conftest.py). Every
configuration runs at once, so each one's trials finish in an order of its own.
"""

from __future__ import annotations

import itertools
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from hpo.orchestration import check_artifact_store, dispatch_trials, load_executor, submit_study
from hpo.spec import load_study_spec
from hpo.storage import Storage
from tests.invariants import check_study

from .conftest import Workers, hpo
from .test_faults import wait_finished

pytestmark = pytest.mark.services

_HEAD = """\
name: NAME
seed: 23
dataset: {kind: digits, subset: 300, val_fraction: 0.25, test_fraction: 0.2}
model: {hidden_sizes: [16], activation: relu, weight_init: he, dropout: 0.1}
training: {optimizer: sgd, lr: 0.05, epochs: 3, batch_size: 50}
"""

_PARAMS = """\
  parameters:
    lr: {type: float, low: 1.0e-4, high: 1.0, log: true}
    weight_decay: {type: float, low: 1.0e-8, high: 1.0e-2, log: true}
    model.width: {type: int, low: 4, high: 32}
    activation: {type: categorical, choices: [relu, tanh]}
"""

# Three stages that narrow (Sobol points, the default), the later ones continuing the best
# networks of the stage before (promotion reads another process's saved network).
NARROWING = (
    _HEAD
    + """\
search:
  sampler: narrowing
  stages:
    - {trials: 6, epochs: 1}
    - {trials: 6, epochs: 2}
    - {trials: 4}
  narrowing: {promote: 0.3}
"""
    + _PARAMS
)

# Independent random draws.
RANDOM = (
    _HEAD
    + """\
search:
  sampler: random
  stages: [{trials: 8}]
"""
    + _PARAMS
)

# A sequential sampler with one trial in flight: each proposal sees every earlier result (TPE
# models the results from its 11th trial on; the first 10 are seeded random draws).
TPE_ONE_IN_FLIGHT = (
    _HEAD
    + """\
search:
  sampler: tpe
  stages: [{trials: 11}]
  in_flight: 1
"""
    + _PARAMS
)

STUDIES = {"narrowing": NARROWING, "random": RANDOM, "tpe1": TPE_ONE_IN_FLIGHT}


def _without_seconds(curves: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    return [{k: v for k, v in c.items() if k != "seconds"} for c in curves or []]


def outcome(storage: Storage, name: str) -> dict[str, Any]:
    """Everything a study's results are, per trial number and stage (no ids, times or workers)."""
    study = storage.get_study(name)
    trials = storage.trials(study.id)
    numbers = {t.id: t.number for t in trials}
    return {
        "state": study.state,
        "stages": [(s.index, s.n_trials, s.epochs, s.space, s.state) for s in storage.stages(study.id)],
        "trials": {
            t.number: {
                "stage": t.stage,
                "params": t.params,
                "seed": t.seed,
                "state": t.state,
                "value": t.value,
                "intermediate": t.intermediate,
                "curves": _without_seconds(t.curves),
                "parent": numbers.get(t.parent_id) if t.parent_id is not None else None,
            }
            for t in trials
        },
    }


def test_narrowing_random_and_one_in_flight_tpe_give_the_same_trials_on_1_2_and_8_workers_and_locally(
    tmp_path: Path, workers: Workers, storage: Storage, study_name: str, broker_url: str
) -> None:
    # Each configuration on a queue of its own: a worker of 1, 2 and 8 processes (8 on 2 cores:
    # they interleave at random).
    pools = {
        "remote-1": (workers, 1),
        "remote-2": (Workers(broker_url, workers.db, tmp_path / "w2"), 2),
        "remote-8": (Workers(broker_url, workers.db, tmp_path / "w8"), 8),
    }
    for ws, _ in pools.values():
        ws.tmp.mkdir(exist_ok=True)
    local = {"local-3": 3}
    try:
        for ws, c in pools.values():
            # No faults here: a slow reaper (the fast one of FAST_ENV costs CPU every second).
            ws.start(1, concurrency=c, wait=False, HPO_REAPER_INTERVAL="10")
        for ws, c in pools.values():
            ws.wait_ready(ws.started[0], c, timeout=60)

        def run(config: str, kind: str) -> tuple[str, str, subprocess.CompletedProcess[str] | None]:
            name = f"{study_name}-{kind}-{config}"
            path = tmp_path / f"{name}.yaml"
            path.write_text(STUDIES[kind].replace("NAME", name))
            if config in local:  # the CLI, as a user runs it
                db = f"sqlite:///{tmp_path / config}.db"
                args = ["--db", db, "--workers", str(local[config]), "--artifacts", str(tmp_path / config)]
                return config, kind, hpo("submit", str(path), "--no-progress", *args, timeout=180)
            # What `hpo submit --broker` does, here: a CLI process per study costs seconds of CPU.
            ws = pools[config][0]
            executor = load_executor("celery", ws.broker, ws.db, queue=ws.queue)
            (tmp_path / config).mkdir(exist_ok=True)
            store = check_artifact_store(ws.db, str(tmp_path / config))
            study, _ = submit_study(storage, load_study_spec(path), queue=ws.queue, artifacts=store)
            dispatch_trials(storage, executor, [t.id for t in storage.trials(study.id)])
            wait_finished(storage, name, ws, timeout=180)
            return config, kind, None

        jobs = [(config, kind) for config in [*pools, *local] for kind in STUDIES]
        with ThreadPoolExecutor(len(jobs)) as pool:
            done = list(pool.map(lambda job: run(*job), jobs))
        for config, kind, proc in done:
            assert proc is None or proc.returncode == 0, (config, kind, proc.stderr[-3000:])
    finally:
        for ws, _ in list(pools.values())[1:]:
            ws.stop()

    for kind in STUDIES:
        results = {}
        for config in [*pools, *local]:
            name = f"{study_name}-{kind}-{config}"
            st = Storage(f"sqlite:///{tmp_path / config}.db") if config in local else storage
            try:
                check_study(st, name, rerun=1)
                results[config] = outcome(st, name)
            finally:
                if st is not storage:
                    st.dispose()
        reference = results["remote-1"]
        assert reference["state"] == "COMPLETE"
        assert all(t["state"] == "COMPLETE" for t in reference["trials"].values()), kind
        for config, result in results.items():
            for number, trial in reference["trials"].items():
                assert result["trials"][number] == trial, (kind, config, number)
            assert result == reference, (kind, config)

    # The comparison covered what it claims: ranges that narrowed, promoted trials, and values
    # that differ from trial to trial (a study whose trials all scored alike would prove little).
    narrowing = outcome(storage, f"{study_name}-narrowing-remote-1")
    spaces = [s[3] for s in narrowing["stages"]]
    assert len(spaces) == 3 and spaces[0] != spaces[1] != spaces[2]
    assert sum(t["parent"] is not None for t in narrowing["trials"].values()) == 2 + 1
    assert len({t["value"] for t in narrowing["trials"].values()}) > 5
    # ... and that the 8 processes did run trials side by side.
    spans = sorted(
        (t.started_at, t.finished_at)
        for kind in STUDIES
        for t in storage.trials(storage.get_study(f"{study_name}-{kind}-remote-8").id)
        if t.started_at is not None and t.finished_at is not None
    )
    assert any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))
