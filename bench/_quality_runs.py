"""One run of bench/search_quality.py: a method searching a task's box with one seed.

A run returns its finished trials in the order they finished, each with the epochs it trained,
its validation score (``None`` unless COMPLETE) and its test accuracy; the summaries read budgets
off the cumulative epochs.

- Optuna's methods run in a plain ask/tell loop over hpo's training code, with two trials in
  flight as a 2-worker run has them: the next trial is asked for when the first of two virtual
  workers is free (time counted in epochs), and a trial is told when its worker's clock passes
  its end. So TPE and CMA-ES choose without the result of the trial still running, as they do on
  two workers. (A pruner sees every epoch reported so far, the running trial's included.)
- hpo's narrowing runs are studies run by hpo itself (its storage, ``advance`` and ``run_trial``
  on a SQLite file, with its artifact store), one per budget, since its stages are shares of the
  budget. The order of a stage's trials does not change what it proposes.
"""

from __future__ import annotations

import heapq
import json
import math
import tempfile
import warnings
from pathlib import Path
from typing import Any

from bench._quality_tasks import stages_for, task_of

IN_FLIGHT = 2


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Run one job (a dict: task, box, method, seed, data_dir, and budget for narrowing)."""
    import time

    start = time.perf_counter()
    out = run_narrowing(job) if "variant" in job else run_optuna(job)
    return {**job, **out, "seconds": round(time.perf_counter() - start, 2)}


# ---------------------------------------------------------------------------------------------
# Optuna


def _sampler_and_pruner(method: str, seed: int, epochs: int) -> tuple[Any, Any]:
    import optuna

    samplers = {
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "qmc": lambda: optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=seed),
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed),
        "tpe-hyperband": lambda: optuna.samplers.TPESampler(seed=seed),
        "random-sha": lambda: optuna.samplers.RandomSampler(seed=seed),
        "cmaes": lambda: optuna.samplers.CmaEsSampler(seed=seed),
    }
    pruners = {
        "tpe-hyperband": lambda: optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=epochs, reduction_factor=3
        ),
        "random-sha": lambda: optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3),
    }
    pruner = pruners.get(method, optuna.pruners.NopPruner)()
    return samplers[method](), pruner


def run_optuna(job: dict[str, Any]) -> dict[str, Any]:
    """Optuna's method on the task's box until the full budget's epochs are spent."""
    import optuna

    from hpo.orchestration import load_data
    from hpo.spec import StudySpec

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    task = task_of(job)
    spec = StudySpec.model_validate(
        {
            **task.study(job["box"], Path(job["data_dir"]), f"q-{job['method']}", job["seed"]),
            "search": {
                "sampler": "random",
                "stages": [{"trials": 1, "epochs": task.epochs}],
                "parameters": task.boxes[job["box"]],
            },
        }
    )
    data = load_data(spec.dataset, spec.training.dtype)
    sampler, pruner = _sampler_and_pruner(job["method"], job["seed"], task.epochs)
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
    space = spec.search_space()
    workers = [(0.0, w) for w in range(IN_FLIGHT)]  # (time free, worker), in epochs
    running: list[tuple[float, int, Any, dict[str, Any]]] = []  # (end, number, trial, record)
    finished: list[dict[str, Any]] = []
    spent = 0
    while spent < task.budget:
        now, w = heapq.heappop(workers)
        while running and running[0][0] <= now:
            _tell(study, heapq.heappop(running), finished)
        trial = study.ask(space)
        record = _train_optuna_trial(spec, data, trial)
        spent += record["epochs"]
        heapq.heappush(running, (now + record["epochs"], trial.number, trial, record))
        heapq.heappush(workers, (now + record["epochs"], w))
    while running:
        _tell(study, heapq.heappop(running), finished)
    return {"trials": finished}


def _tell(study: Any, item: tuple[float, int, Any, dict[str, Any]], finished: list[dict[str, Any]]) -> None:
    import optuna

    _, _, trial, record = item
    state = {"COMPLETE": optuna.trial.TrialState.COMPLETE, "PRUNED": optuna.trial.TrialState.PRUNED}
    st = state.get(record["state"], optuna.trial.TrialState.FAIL)
    study.tell(trial, record["value"] if st == optuna.trial.TrialState.COMPLETE else None, state=st)
    finished.append(record)


def _train_optuna_trial(spec: Any, data: Any, trial: Any) -> dict[str, Any]:
    """Train one asked trial with hpo's training code, reporting every epoch to the pruner."""
    from hpo.orchestration import objective_value, train_network

    train_spec = spec.trial_spec(trial.params, 0, seed=spec.trial_seed(trial.number))
    pruned = False

    def report(record: Any) -> bool:
        nonlocal pruned
        if record.val_acc is None or not math.isfinite(record.val_acc):
            return False
        trial.report(float(record.val_acc), record.epoch)
        pruned = trial.should_prune()
        return pruned

    run = train_network(train_spec, data=data, callback=report)
    history = run.result.history
    value = None if pruned else objective_value(spec, history)
    state = "PRUNED" if pruned else ("COMPLETE" if value is not None else "FAIL")
    return {
        "number": trial.number,
        "epochs": len(history),
        "state": state,
        "value": value,
        "test": run.test_accuracy() if state == "COMPLETE" else None,
        "params": trial.params,
    }


# ---------------------------------------------------------------------------------------------
# hpo's narrowing


def narrowing_study(job: dict[str, Any]) -> dict[str, Any]:
    """The study file (a dict) of a narrowing job at its budget."""
    task = task_of(job)
    variant = job["variant"]
    spec = task.study(job["box"], Path(job["data_dir"]), f"q-{job['method']}", job["seed"])
    spec["search"]["sampler"] = "narrowing"
    if variant["schedule"] == "default":
        # hpo's own default: `search.trials: N` with N full trials' worth of the budget.
        spec["search"]["trials"] = job["budget"] // task.epochs
    else:
        spec["search"]["stages"] = stages_for(job["budget"], task.epochs, variant["schedule"])
    if variant.get("narrowing"):
        spec["search"]["narrowing"] = dict(variant["narrowing"])
    return spec


def run_narrowing(job: dict[str, Any]) -> dict[str, Any]:
    """A narrowing study run by hpo itself in this process, on a SQLite file."""
    from hpo.orchestration import TestResult, run_trial, submit_study
    from hpo.spec import StudySpec
    from hpo.storage import Storage

    spec = StudySpec.model_validate(narrowing_study(job))
    with tempfile.TemporaryDirectory(prefix="hpo-quality-") as tmp:
        storage = Storage(f"sqlite:///{Path(tmp) / 'q.db'}")
        storage.upgrade()
        study, _ = submit_study(storage, spec)
        cache: dict[str, Any] = {}
        while (trial := storage.claim_next(study.id, "quality", 3600.0)) is not None:
            run_trial(storage, trial, "quality", data_cache=cache)
        study = storage.get_study_by_id(study.id)
        rows = sorted(storage.trials(study.id), key=lambda t: (t.finished_at, t.number))
        spaces = [json.loads(s.space) for s in storage.stages(study.id)]
        storage.dispose()
    if study.state != "COMPLETE":
        raise RuntimeError(f"{job} ended {study.state}: {study.reason}")
    test = TestResult.from_dict(study.test_result)
    trials = [
        {
            "number": t.number,
            "stage": t.stage,
            "epochs": _epochs_trained(t),
            "state": str(t.state.value),
            "value": t.value if t.state.value == "COMPLETE" else None,
            "params": t.params,
            "parent": getattr(t, "parent_id", None),
        }
        for t in rows
    ]
    return {
        "trials": trials,
        "spaces": spaces,
        "winner": None if test is None else {"number": test.trial_number, "test": test.test_acc},
    }


def _epochs_trained(row: Any) -> int:
    """The epochs a trial trained itself (recorded by hpo; else its curve's length)."""
    if getattr(row, "epochs_trained", None) is not None:
        return int(row.epochs_trained)
    return len(row.curves or [])
