"""Several processes claiming and finishing trials of one study: each trial finished exactly once."""

from __future__ import annotations

import multiprocessing
import traceback
import uuid
from typing import Any

import optuna
import pytest

from hpo.storage import Storage, TrialOutcome, TrialState

from .conftest import draft

N_TRIALS = 200
N_PROCS = 4


def _work(url: str, study_id: int, worker: str, queue: Any) -> None:
    """Claim and finish until nothing is left; report the trials finished, or the error."""
    try:
        storage = Storage(url)
        done: list[int] = []
        while (trial := storage.claim_next(study_id, worker, 60)) is not None:
            assert storage.heartbeat(trial.id, worker, 60, intermediate={1: 0.5}, attempt=trial.attempts)
            if storage.finish(
                trial.id,
                worker,
                TrialOutcome("COMPLETE", trial.number / 1000, intermediate={1: 0.5, 2: 0.6}),
                attempt=1,
            ):
                done.append(trial.id)
            if trial.number % 7 == 0:  # mirrors racing each other and the finishes
                storage.mirror(study_id)
            # A second delivery of the same result is harmless.
            assert not storage.finish(trial.id, worker, TrialOutcome("COMPLETE", 0.0))
        queue.put((worker, done, None))
    except BaseException:
        queue.put((worker, [], traceback.format_exc()))


def _run_processes(url: str, study_id: int) -> list[int]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_work, args=(url, study_id, f"proc-{i}", queue)) for i in range(N_PROCS)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    errors = [err for _, _, err in results if err]
    assert errors == [], errors[0]
    per_worker = {worker: done for worker, done, _ in results}
    assert sum(1 for done in per_worker.values() if done) >= 2, "the work was not shared"
    return [trial_id for done in per_worker.values() for trial_id in done]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_four_processes_finish_every_trial_exactly_once(backend: str, request: pytest.FixtureRequest) -> None:
    if backend == "sqlite":
        storage = Storage(str(request.getfixturevalue("sqlite_url")))
        storage.upgrade()
    else:
        storage = request.getfixturevalue("shared_pg_storage")
    name = f"procs-{uuid.uuid4().hex[:10]}"
    study, _ = storage.create_study(name, "{}", "h", "maximize", draft(0, N_TRIALS, 0))
    try:
        finished = _run_processes(storage.url, study.id)
        assert sorted(finished) == sorted(t.id for t in storage.trials(study.id))  # each exactly once
        trials = storage.trials(study.id)
        assert all(t.state == TrialState.COMPLETE and t.attempts == 1 for t in trials)
        assert [t.value for t in trials] == [n / 1000 for n in range(N_TRIALS)]
        storage.mirror(study.id)  # the finishes left since the processes' last mirror
        loaded = optuna.load_study(study_name=name, storage=storage.url)
        mirrored = sorted(ft.user_attrs["hpo_trial_id"] for ft in loaded.trials)
        assert mirrored == sorted(t.id for t in trials)  # one Optuna trial each (I4)
        assert all(t.optuna_trial_id is not None for t in storage.trials(study.id))
    finally:
        storage.delete_study(name)


ROUNDS = 25


def _finish_together(url: str, study_ids: list[int], worker: str, barrier: Any, queue: Any) -> None:
    """For each study (of two trials): claim one, wait for the other process, finish at once;
    report what each finish's progress said was left unfinished."""
    try:
        storage = Storage(url)
        left: list[int] = []
        for study_id in study_ids:
            trial = storage.claim_next(study_id, worker, 60)
            assert trial is not None
            barrier.wait(30)
            progress = storage.finish(trial.id, worker, TrialOutcome("COMPLETE", 0.5), attempt=1)
            assert progress is not None
            left.append(progress.unfinished)
        queue.put((left, None))
    except BaseException:
        queue.put(([], traceback.format_exc()))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_of_two_trials_finishing_together_one_sees_the_stage_done(
    backend: str, request: pytest.FixtureRequest
) -> None:
    """The last trials of a stage finish at the same moment, ROUNDS times: in every round at least
    one of the two finishes reads the stage done (none unfinished), so the study always moves on
    without waiting for the reaper. Both finishes are committed before either process reads."""
    if backend == "sqlite":
        storage = Storage(str(request.getfixturevalue("sqlite_url")))
        storage.upgrade()
    else:
        storage = request.getfixturevalue("shared_pg_storage")
    names = [f"pair-{uuid.uuid4().hex[:10]}" for _ in range(ROUNDS)]
    ids = [storage.create_study(name, "{}", "h", "maximize", draft(0, 2, 0))[0].id for name in names]
    ctx = multiprocessing.get_context("spawn")
    queue, barrier = ctx.Queue(), ctx.Barrier(2)
    args = [(storage.url, ids, f"proc-{i}", barrier, queue) for i in range(2)]
    procs = [ctx.Process(target=_finish_together, args=a) for a in args]
    try:
        for p in procs:
            p.start()
        results = [queue.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(30)
        errors = [err for _, err in results if err]
        assert errors == [], errors[0]
        (a, _), (b, _) = results
        assert len(a) == len(b) == ROUNDS
        assert all(min(x, y) == 0 for x, y in zip(a, b, strict=True)), list(zip(a, b, strict=True))
    finally:
        for name in names:
            storage.delete_study(name)
