"""The trial state machine: claims, heartbeats, finishing once, leases, advancing exactly once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from optuna.distributions import FloatDistribution

from hpo.storage import (
    NewTrial,
    StageState,
    Storage,
    StorageError,
    StudyNotFoundError,
    StudyRow,
    StudyState,
    TrialOutcome,
    TrialState,
)

from . import helpers
from .conftest import SPACE, draft

LATER = timedelta(hours=1)

MakeStudy = Callable[..., StudyRow]


def _later() -> datetime:
    return datetime.now(UTC) + LATER


def _finish_stage(storage: Storage, study: StudyRow, stage: int) -> None:
    for trial in storage.trials(study.id, states=[TrialState.PENDING], stage=stage):
        claimed = helpers.claim(storage, trial.id, "w", 60)
        assert claimed is not None
        assert storage.finish(
            trial.id, "w", TrialOutcome(TrialState.COMPLETE, float(trial.number)), attempt=claimed.attempts
        )


def test_claim_is_exclusive(storage: Storage, make_study: MakeStudy) -> None:
    study = make_study(3)
    first = storage.trials(study.id)[0]
    claimed = helpers.claim(storage, first.id, "w1", 30)
    assert claimed is not None
    assert (claimed.state, claimed.worker, claimed.attempts) == (TrialState.RUNNING, "w1", 1)
    assert claimed.started_at is not None and claimed.lease_expires_at is not None
    assert claimed.lease_expires_at.tzinfo is not None and claimed.lease_expires_at > claimed.started_at
    assert helpers.claim(storage, first.id, "w2", 30) is None
    assert helpers.trial(storage, first.id).worker == "w1"  # type: ignore[union-attr]
    # claim_next takes the oldest pending trial, then the next, then nothing.
    assert [storage.claim_next(study.id, "w2", 30).number for _ in range(2)] == [1, 2]  # type: ignore[union-attr]
    assert storage.claim_next(study.id, "w2", 30) is None
    assert storage.counts(study.id)[TrialState.RUNNING] == 3


def test_claim_next_any_study_skips_stopped_studies(sqlite_url: str) -> None:
    storage = Storage(sqlite_url)
    storage.upgrade()
    a, _ = storage.create_study("a", "{}", "h", "maximize", draft(0, 1, 0))
    b, _ = storage.create_study("b", "{}", "h", "maximize", draft(0, 1, 0))
    storage.cancel_study("a")
    got = storage.claim_next(None, "w", 30)
    assert got is not None and got.study_id == b.id
    assert storage.claim_next(None, "w", 30) is None
    assert helpers.claim(storage, storage.trials(a.id)[0].id, "w", 30) is None  # cancelled study


def test_heartbeat(storage: Storage, make_study: MakeStudy) -> None:
    study = make_study(2)
    trial = storage.claim_next(study.id, "w1", 5)
    assert trial is not None
    assert storage.heartbeat(trial.id, "w1", 60, curves=[{"epoch": 1, "val_acc": 0.5}], intermediate={1: 0.5})
    after = helpers.trial(storage, trial.id)
    assert after is not None and after.lease_expires_at is not None and trial.lease_expires_at is not None
    assert after.lease_expires_at > trial.lease_expires_at
    assert after.curves == [{"epoch": 1, "val_acc": 0.5}]
    assert after.intermediate == {1: 0.5}
    assert helpers.intermediate_values(storage, study.id, 0) == {trial.number: {1: 0.5}}
    assert storage.heartbeat(trial.id, "w1", 60)  # curves untouched when not given
    assert helpers.trial(storage, trial.id).curves == [{"epoch": 1, "val_acc": 0.5}]  # type: ignore[union-attr]
    assert not storage.heartbeat(trial.id, "w2", 60)  # not this worker's claim
    assert not storage.heartbeat(trial.id, "w1", 60, attempt=2)  # an older/newer claim of the same name
    assert storage.heartbeat(trial.id, "w1", 60, attempt=1)
    pending = storage.trials(study.id, states=[TrialState.PENDING])[0]
    assert not storage.heartbeat(pending.id, "w1", 60)  # never claimed


def test_heartbeat_tells_the_worker_about_a_cancel(storage: Storage, make_study: MakeStudy) -> None:
    study = make_study(2)
    trial = storage.claim_next(study.id, "w1", 60)
    assert trial is not None
    cancelled = storage.cancel_study(study.name)
    assert cancelled.state == StudyState.CANCELLED
    assert not storage.heartbeat(trial.id, "w1", 60)
    assert not storage.finish(trial.id, "w1", TrialOutcome(TrialState.COMPLETE, 1.0))  # late result ignored
    back = helpers.trial(storage, trial.id)
    assert back is not None
    assert (back.state, back.attempts, back.worker) == (TrialState.PENDING, 0, None)  # not counted
    assert storage.claim_next(study.id, "w1", 60) is None  # nothing runs while cancelled
    resumed = storage.resume_study(study.name)
    assert resumed.state == StudyState.RUNNING and resumed.reason is None
    again = storage.claim_next(study.id, "w2", 60)
    assert again is not None and again.number == 0 and again.attempts == 1


def test_finish_once(storage: Storage, make_study: MakeStudy) -> None:
    study = make_study(2)
    trial = storage.claim_next(study.id, "w1", 60)
    assert trial is not None
    assert storage.finish(
        trial.id, "w1", TrialOutcome("COMPLETE", 0.75, None, [{"epoch": 1}], {1: 0.7, 2: 0.75})
    )
    done = helpers.trial(storage, trial.id)
    assert done is not None
    assert (done.state, done.value, done.intermediate) == (TrialState.COMPLETE, 0.75, {1: 0.7, 2: 0.75})
    assert done.finished and done.finished_at is not None and done.lease_expires_at is None
    # A second delivery changes nothing.
    assert not storage.finish(trial.id, "w1", TrialOutcome("FAIL", None, "again"))
    assert not storage.finish(trial.id, "w1", TrialOutcome("COMPLETE", 0.1))
    assert helpers.trial(storage, trial.id) == done
    # Unfinished or unclaimed trials cannot be finished.
    other = storage.trials(study.id, states=["PENDING"])[0]
    assert not storage.finish(other.id, "w1", TrialOutcome("COMPLETE", 0.5))
    assert helpers.trial(storage, other.id).state == TrialState.PENDING  # type: ignore[union-attr]


def test_finish_validates_the_result(storage: Storage, make_study: MakeStudy) -> None:
    study = make_study(1)
    trial = storage.claim_next(study.id, "w", 60)
    assert trial is not None
    with pytest.raises(ValueError, match="value"):
        storage.finish(trial.id, "w", TrialOutcome("COMPLETE", None))
    with pytest.raises(ValueError, match="value"):
        storage.finish(trial.id, "w", TrialOutcome("COMPLETE", float("nan")))
    with pytest.raises(ValueError, match="reason"):
        storage.finish(trial.id, "w", TrialOutcome("FAIL"))
    with pytest.raises(ValueError, match="final state"):
        storage.finish(trial.id, "w", TrialOutcome("RUNNING", 1.0))
    assert helpers.trial(storage, trial.id).state == TrialState.RUNNING  # type: ignore[union-attr]


def test_late_finish_after_lease_takeover(storage: Storage, make_study: MakeStudy) -> None:
    study = make_study(1)
    first = storage.claim_next(study.id, "w1", 1)
    assert first is not None
    assert storage.requeue_expired(now=_later(), study_id=study.id) == [first.id]
    assert helpers.trial(storage, first.id).state == TrialState.PENDING  # type: ignore[union-attr]
    second = storage.claim_next(study.id, "w2", 60)
    assert second is not None and second.id == first.id and second.attempts == 2
    assert not storage.heartbeat(first.id, "w1", 60)
    assert not storage.finish(first.id, "w1", TrialOutcome("COMPLETE", 0.1))  # the old claim is gone
    assert storage.finish(first.id, "w2", TrialOutcome("COMPLETE", 0.9), attempt=2)
    assert helpers.trial(storage, first.id).value == 0.9  # type: ignore[union-attr]


def test_same_worker_name_old_claim_is_refused_with_attempt(storage: Storage, make_study: MakeStudy) -> None:
    study = make_study(1)
    first = storage.claim_next(study.id, "host-1", 1)
    assert first is not None
    storage.requeue_expired(now=_later(), study_id=study.id)
    second = storage.claim_next(study.id, "host-1", 60)
    assert second is not None
    assert not storage.finish(first.id, "host-1", TrialOutcome("COMPLETE", 0.1), attempt=first.attempts)
    assert storage.finish(first.id, "host-1", TrialOutcome("COMPLETE", 0.2), attempt=second.attempts)


def test_requeue_expired_with_attempt_cap(storage: Storage, make_study: MakeStudy) -> None:
    study = make_study(2)
    live = storage.claim_next(study.id, "alive", 3600)
    assert live is not None
    target = storage.trials(study.id, states=["PENDING"])[0]
    for attempt in (1, 2):
        claimed = helpers.claim(storage, target.id, f"w{attempt}", 1)
        assert claimed is not None and claimed.attempts == attempt
        assert storage.requeue_expired(now=datetime.now(UTC) + timedelta(seconds=30), study_id=study.id) == [
            target.id
        ]
    assert helpers.claim(storage, target.id, "w3", 1) is not None
    assert storage.requeue_expired(now=datetime.now(UTC) + timedelta(seconds=30), study_id=study.id) == [
        target.id
    ]
    failed = helpers.trial(storage, target.id)
    assert failed is not None
    assert (failed.state, failed.reason, failed.value) == (
        TrialState.FAIL,
        "worker lost 3 times (attempt cap)",
        None,
    )
    assert failed.finished_at is not None
    assert storage.mirror(study.id) == 1
    assert helpers.trial(storage, target.id).optuna_trial_id is not None  # type: ignore[union-attr]  # mirrored as FAIL
    assert helpers.trial(storage, live.id).state == TrialState.RUNNING  # type: ignore[union-attr]  # lease not expired
    assert storage.requeue_expired(now=datetime.now(UTC), study_id=study.id) == []


def test_resume_requeue_running(storage: Storage, make_study: MakeStudy) -> None:
    study = make_study(2)
    trial = storage.claim_next(study.id, "dead", 3600)
    assert trial is not None
    resumed = storage.resume_study(study.name, requeue_running=True)
    assert resumed.state == StudyState.RUNNING
    back = helpers.trial(storage, trial.id)
    assert back is not None and back.state == TrialState.PENDING and back.attempts == 1


def test_fail_study_and_resume(storage: Storage, make_study: MakeStudy) -> None:
    study = make_study(2)
    trial = storage.claim_next(study.id, "w", 60)
    assert trial is not None
    assert storage.fail_study(study.id, "narrowing raised")
    failed = storage.get_study_by_id(study.id)
    assert (failed.state, failed.reason) == (StudyState.FAILED, "narrowing raised")
    assert helpers.trial(storage, trial.id).state == TrialState.PENDING  # type: ignore[union-attr]
    assert not storage.fail_study(study.id, "again")  # no-op when not running
    assert storage.get_study_by_id(study.id).reason == "narrowing raised"
    assert not storage.fail_study(10**9, "no such study")
    assert storage.resume_study(study.name).state == StudyState.RUNNING


def test_advance_needs_a_finished_stage_and_the_expected_index(
    storage: Storage, make_study: MakeStudy
) -> None:
    study = make_study(2)
    nxt = draft(1, 2, 2)
    assert not storage.advance(study.id, 0, nxt)  # nothing finished yet
    _finish_stage(storage, study, 0)
    assert not storage.advance(study.id, 1, draft(2, 2, 2))  # wrong expected stage
    with pytest.raises(ValueError, match="index"):
        storage.advance(study.id, 0, draft(2, 2, 2))
    assert storage.advance(study.id, 0, nxt)
    assert not storage.advance(study.id, 0, nxt)  # second caller: no-op
    stages = storage.stages(study.id)
    assert [(s.index, s.state) for s in stages] == [(0, StageState.COMPLETE), (1, StageState.RUNNING)]
    assert stages[0].finished_at is not None
    assert storage.get_study_by_id(study.id).current_stage == 1


def test_advance_refuses_a_gap_in_numbering_and_writes_nothing(
    storage: Storage, make_study: MakeStudy
) -> None:
    study = make_study(2)
    _finish_stage(storage, study, 0)
    with pytest.raises(StorageError, match="from 2"):
        storage.advance(study.id, 0, draft(1, 2, 3))
    assert storage.get_study_by_id(study.id).current_stage == 0
    assert [s.index for s in storage.stages(study.id)] == [0]
    assert storage.stages(study.id)[0].state == StageState.RUNNING
    assert len(storage.trials(study.id)) == 2


def test_contiguous_numbers_across_stages_and_completion(storage: Storage, make_study: MakeStudy) -> None:
    study = make_study(3)
    first = 3
    for stage, n in ((0, 2), (1, 4)):
        _finish_stage(storage, study, stage)
        assert storage.advance(study.id, stage, draft(stage + 1, n, first))
        first += n
    _finish_stage(storage, study, 2)
    assert storage.advance(study.id, 2, None, complete_reason="last stage", test_result={"test_acc": 0.93})
    done = storage.get_study_by_id(study.id)
    assert (done.state, done.current_stage, done.reason) == (StudyState.COMPLETE, 2, "last stage")
    assert done.test_result == {"test_acc": 0.93}
    trials = storage.trials(study.id)
    assert [t.number for t in trials] == list(range(9))  # I2
    assert [t.stage for t in trials] == [0, 0, 0, 1, 1, 2, 2, 2, 2]
    assert [s.n_trials for s in storage.stages(study.id)] == [3, 2, 4]
    assert all(s.state == StageState.COMPLETE for s in storage.stages(study.id))
    assert storage.counts(study.id) == {
        TrialState.PENDING: 0,
        TrialState.RUNNING: 0,
        TrialState.COMPLETE: 9,
        TrialState.FAIL: 0,
        TrialState.PRUNED: 0,
    }
    assert storage.counts(study.id, stage=1)[TrialState.COMPLETE] == 2
    assert not storage.advance(study.id, 2, None)
    with pytest.raises(StorageError, match="complete"):
        storage.resume_study(done.name)


def test_advance_exactly_once_under_8_threads(storage: Storage, make_study: MakeStudy) -> None:
    study = make_study(4)
    _finish_stage(storage, study, 0)
    barrier = threading.Barrier(8)
    results: list[bool] = []
    errors: list[BaseException] = []

    def race() -> None:
        try:
            barrier.wait()
            results.append(storage.advance(study.id, 0, draft(1, 5, 4)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=race) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(results) == [False] * 7 + [True]
    assert [s.index for s in storage.stages(study.id)] == [0, 1]
    assert [t.number for t in storage.trials(study.id)] == list(range(9))


def test_complete_exactly_once_under_8_threads(storage: Storage, make_study: MakeStudy) -> None:
    study = make_study(2)
    _finish_stage(storage, study, 0)
    barrier = threading.Barrier(8)
    results: list[bool] = []

    def race(i: int) -> None:
        barrier.wait()
        results.append(storage.advance(study.id, 0, None, test_result={"who": i}))

    threads = [threading.Thread(target=race, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]
    assert storage.get_study_by_id(study.id).state == StudyState.COMPLETE


def test_set_stage_space(storage: Storage, make_study: MakeStudy) -> None:
    from hpo.storage import decode_space, encode_space

    study = make_study(1)
    narrower = dict(SPACE, lr=FloatDistribution(1e-4, 1e-3, log=True))
    assert helpers.set_stage_space(storage, study.id, 0, encode_space(narrower))
    assert decode_space(storage.stages(study.id)[0].space)["lr"] == narrower["lr"]
    assert not helpers.set_stage_space(storage, study.id, 5, encode_space(narrower))
    with pytest.raises(StorageError, match="space"):
        helpers.set_stage_space(storage, study.id, 0, '{"lr": 1}')


def test_timestamps_are_utc(storage: Storage, make_study: MakeStudy) -> None:
    study = make_study(1)
    before = datetime.now(UTC)
    trial = storage.claim_next(study.id, "w", 60)
    assert trial is not None and trial.started_at is not None
    assert trial.started_at.tzinfo == UTC and trial.started_at >= before - timedelta(seconds=1)
    assert storage.get_study_by_id(study.id).created_at.tzinfo == UTC


def test_lookups_and_delete(storage: Storage, make_study: MakeStudy) -> None:
    study = make_study(2)
    assert storage.get_study(study.name) == study
    assert storage.get_study_by_id(study.id) == study
    assert study.id in [s.id for s in storage.list_studies()]
    assert helpers.trial(storage, 10**9) is None
    storage.delete_study(study.name)
    assert storage.find_study(study.name) is None
    assert storage.trials(study.id) == [] and storage.stages(study.id) == []
    with pytest.raises(StudyNotFoundError):
        storage.get_study(study.name)
    with pytest.raises(StudyNotFoundError):
        storage.delete_study(study.name)
    with pytest.raises(StudyNotFoundError):
        storage.get_study_by_id(study.id)


def test_fork_does_not_reuse_the_parents_connections(sqlite_url: str) -> None:
    import multiprocessing

    storage = Storage(sqlite_url)
    storage.upgrade()
    study, _ = storage.create_study("forked", "{}", "h", "maximize", draft(0, 2, 0))
    parent_engine = storage.engine
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_forked_claim, args=(storage, study.id, id(parent_engine), queue))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0
    assert queue.get(timeout=5) == "ok"
    assert storage.engine is parent_engine  # the parent keeps its engine
    assert storage.counts(study.id)[TrialState.COMPLETE] == 1


def _forked_claim(storage: Storage, study_id: int, parent_engine_id: int, queue: object) -> None:
    assert id(storage.engine) != parent_engine_id
    trial = storage.claim_next(study_id, "child", 60)
    assert trial is not None
    assert storage.finish(trial.id, "child", TrialOutcome("COMPLETE", 1.0))
    queue.put("ok")  # type: ignore[attr-defined]


def test_release_on_purpose_does_not_count_the_attempt(storage: Storage, make_study: MakeStudy) -> None:
    study = make_study(1)
    trial = storage.claim_next(study.id, "w1", 60)
    assert trial is not None
    assert storage.heartbeat(trial.id, "w1", 60, curves=[{"epoch": 1}], intermediate={1: 0.3})
    assert not storage.release(trial.id, "w2")  # not this worker's claim
    assert storage.release(trial.id, "w1", attempt=1)
    back = helpers.trial(storage, trial.id)
    assert back is not None
    assert (back.state, back.attempts, back.worker, back.curves, back.intermediate) == (
        TrialState.PENDING,
        0,
        None,
        None,
        None,
    )
    assert not storage.release(trial.id, "w1")  # no longer running
    assert not storage.finish(trial.id, "w1", TrialOutcome("COMPLETE", 1.0))


def test_release_of_a_lost_worker_counts_and_caps(storage: Storage, make_study: MakeStudy) -> None:
    study = make_study(1)
    trial_id = storage.trials(study.id)[0].id
    for attempt in (1, 2, 3):
        claimed = helpers.claim(storage, trial_id, f"pid-{attempt}", 60)
        assert claimed is not None and claimed.attempts == attempt
        assert storage.release(trial_id, f"pid-{attempt}", worker_lost=True, max_attempts=3)
    failed = helpers.trial(storage, trial_id)
    assert failed is not None
    assert (failed.state, failed.reason) == (TrialState.FAIL, "worker lost 3 times (attempt cap)")
    assert storage.mirror(study.id) == 1 and storage.mirror(study.id) == 0


def test_partial_stage_add_trials_and_advance(storage: Storage, make_study: MakeStudy) -> None:
    from hpo.storage import StageDraft

    study = make_study(2)
    _finish_stage(storage, study, 0)
    full = draft(1, 4, 2)
    # A sequential sampler's stage: 4 planned, 2 created now.
    assert storage.advance(study.id, 0, StageDraft(1, 4, 2, full.space_json, full.trials[:2]))
    _finish_stage(storage, study, 1)
    assert not storage.advance(study.id, 1, None)  # I1: only 2 of 4 trials exist
    assert not storage.add_trials(study.id, 0, full.trials[2:3])  # not the current stage
    with pytest.raises(StorageError, match="from 4"):
        storage.add_trials(study.id, 1, full.trials[3:])  # a gap in the numbering
    assert storage.add_trials(study.id, 1, full.trials[2:3])
    assert not storage.add_trials(study.id, 1, full.trials[2:3])  # a racing caller added it already
    with pytest.raises(StorageError, match="cannot add"):
        storage.add_trials(study.id, 1, [*full.trials[3:], NewTrial(6, {"lr": 1e-3}, 7)])  # beyond n_trials
    assert storage.add_trials(study.id, 1, full.trials[3:])
    _finish_stage(storage, study, 1)
    assert storage.advance(study.id, 1, None)
    assert [t.number for t in storage.trials(study.id)] == list(range(6))
    assert [t.stage for t in storage.trials(study.id)] == [0, 0, 1, 1, 1, 1]


def test_add_trials_race_exactly_one_wins(storage: Storage, make_study: MakeStudy) -> None:
    from hpo.storage import StageDraft

    study = make_study(1)
    _finish_stage(storage, study, 0)
    full = draft(1, 3, 1)
    assert storage.advance(study.id, 0, StageDraft(1, 3, 2, full.space_json, full.trials[:1]))
    barrier = threading.Barrier(6)
    results: list[bool] = []

    def race() -> None:
        barrier.wait()
        results.append(storage.add_trials(study.id, 1, full.trials[1:]))

    threads = [threading.Thread(target=race) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 5 + [True]
    assert [t.number for t in storage.trials(study.id)] == [0, 1, 2, 3]


def test_set_test_result(storage: Storage, make_study: MakeStudy) -> None:
    study = make_study(1)
    _finish_stage(storage, study, 0)
    assert storage.advance(study.id, 0, None)
    assert storage.set_test_result(study.id, {"test_acc": 0.91, "reproduced": True})
    assert storage.get_study_by_id(study.id).test_result == {"test_acc": 0.91, "reproduced": True}
    assert not storage.set_test_result(10**9, {})


def test_check_schema_and_dispose(sqlite_url: str) -> None:
    storage = Storage(sqlite_url)
    with pytest.raises(StorageError, match="not initialised"):
        storage.check_schema()
    storage.upgrade()
    storage.check_schema()
    engine = storage.engine
    storage.dispose()
    assert storage.engine is not engine  # a new engine on next use
    storage.check_schema()
