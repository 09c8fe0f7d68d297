"""Remote execution: a message queue carries trial ids; the database holds everything else."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

from ..storage import Storage, StudyState, TrialState
from ._advance import advance_study
from ._executor import Executor
from ._studies import study_spec
from ._trial import LEASE_SECONDS, run_trial

__all__ = ["dispatch_trials", "execute_trial", "reap"]

log = logging.getLogger("hpo.orchestration")

# Datasets a worker process keeps loaded between trials, by spec (see run_trial's data_cache).
_DATA_CACHE: dict[str, Any] = {}


def dispatch_trials(storage: Storage, executor: Executor, trial_ids: Sequence[int]) -> None:
    """Send trials to the queue, recording when (the reaper re-sends what the broker lost).

    The time is recorded before the messages go: a worker that receives one claims the trial at
    once, and a claim must never wait for this update's row locks (sent first, the hundreds of
    claims at a stage's start queued behind the one transaction that marks the whole stage).
    When sending fails, the mark is taken back: the reaper re-sends what was never enqueued.
    """
    if not trial_ids:
        return
    storage.mark_enqueued(trial_ids)
    try:
        executor.dispatch(trial_ids)
    except BaseException:
        with contextlib.suppress(Exception):  # the send's error is the one to report
            storage.mark_enqueued(trial_ids, enqueued=False)
        raise


def execute_trial(
    storage: Storage,
    trial_id: int,
    worker: str,
    *,
    executor: Executor | None = None,
    lease: float = LEASE_SECONDS,
    queues: Sequence[str] | None = None,
) -> str:
    """Claim a trial by id and run it: the body of a remote worker's task.

    A message for a trial that is not PENDING (finished, or running elsewhere: a redelivery, a
    duplicate, a late message after the reaper re-sent it), or whose study is not bound to one of
    ``queues`` (another queue's, or a local run), is acknowledged and does nothing.

    Returns:
        ``"skipped"`` or the trial's final state.
    """
    start = time.perf_counter()
    claimed = storage.claim_with_study(trial_id, worker, lease, queues=queues)
    claim = time.perf_counter() - start
    if claimed is None:
        return "skipped"
    trial, study = claimed
    new_trials = None if executor is None else (lambda ids: dispatch_trials(storage, executor, ids))
    report = run_trial(
        storage, trial, worker, lease=lease, data_cache=_DATA_CACHE, on_new_trials=new_trials, study=study
    )
    # One line per trial, as Celery logs one per task: what the database cost it (bench/scale.py
    # reads these for its latency percentiles).
    log.info(
        "trial %s of study %s %s: claim %.2f ms, run %.3f s, finish %.2f ms, advance %.2f ms",
        trial.number,
        study.name,
        report.state if report.recorded else "not recorded",
        claim * 1e3,
        report.seconds,
        report.finish_seconds * 1e3,
        report.advance_seconds * 1e3,
    )
    return report.state if report.recorded else "skipped"


def reap(
    storage: Storage, executor: Executor, *, grace: float = 10.0, requeue_after: float = 900.0
) -> list[int]:
    """Put owed trials back on the queue; run by workers periodically and by ``hpo status``.

    Only studies submitted to this executor's queue are touched (local runs and other queues
    sharing the database are left alone).

    - RUNNING trials whose lease expired (a worker died) go back to PENDING, or FAIL at their
      study's attempt cap.
    - Each study is advanced (:func:`advance`): its stage moves on if it is done, whoever
      should have moved it.
    - PENDING trials of running studies whose message is not in the queue (a broker restarted
      without persistence, a send that failed) are sent again, and so is any trial enqueued more
      than ``requeue_after`` seconds ago (the only rule when the broker cannot be inspected).
      A duplicate message is harmless: the second claim does nothing.

    Args:
        grace: Trials enqueued less than this many seconds ago are left alone (their message
            may still be on its way into the queue).
        requeue_after: The age-only fallback threshold.

    Returns:
        Ids of the trials sent.
    """
    mine = {
        s.id: s for s in storage.list_studies() if s.state == StudyState.RUNNING and s.queue == executor.queue
    }
    for study_id, study in mine.items():
        cap = study_spec(study).limits.max_attempts
        moved = set(storage.requeue_expired(max_attempts=cap, study_id=study_id))
        requeued: list[int] = []
        if moved:
            # Re-send these now: the dead worker's message may still sit among Redis's unacked
            # messages until the visibility timeout, so "is it queued?" would wrongly say yes.
            requeued = [t.id for t in storage.trials(study_id, states=(TrialState.PENDING,)) if t.id in moved]
        # Every study is advanced: a stage whose last trial's worker died between recording it
        # and advancing moves on here (and finished trials reach the Optuna view).
        dispatch_trials(storage, executor, requeued + advance_study(storage, study_id))
    queued = executor.queued_trial_ids()
    # A backstop for liveness: a trial PENDING for longer than requeue_after is sent again even
    # if the broker says its message exists (it may sit with a consumer that will never ack it).
    stale = {t.id for t in storage.undelivered(requeue_after) if t.study_id in mine}
    lost = set()
    if queued is not None:
        lost = {t.id for t in storage.undelivered(grace) if t.study_id in mine and t.id not in queued}
    owed = sorted(stale | lost)
    dispatch_trials(storage, executor, owed)
    return owed
