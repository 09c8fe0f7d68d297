"""Moving a study on: the next stage, the study's end, its failure; and its Optuna view."""

from __future__ import annotations

import logging
import math
import time

from ..storage import Storage, StudyProgress, StudyState, TrialState
from ._evaluation import evaluate_on_test
from ._proposals import next_stage_draft, pending_ids, top_up
from ._studies import best_trials, study_spec

__all__ = ["MIRROR_INTERVAL", "advance_study", "mirror_optuna_view"]

log = logging.getLogger("hpo.orchestration")

# A process writes a study's finished trials to its Optuna view at most this often while a stage
# runs (always at a stage's end): short trials are mirrored in batches, long ones as they finish.
MIRROR_INTERVAL = 1.0
_last_mirror: dict[tuple[str, int], float] = {}


def advance_study(storage: Storage, study_id: int, progress: StudyProgress | None = None) -> list[int]:
    """Move the study on if its current stage allows it; safe to call from any process, any time.

    - Too many failed trials: the study fails with that reason.
    - A sequential sampler's stage not fully created yet: top up its in-flight trials.
    - Every trial of the stage finished: the next stage's space comes from this stage's trials
      (the search strategy's rule) and its trials are written, or after the last stage the best
      trial is evaluated on the test split and the study completes (or fails, if no trial
      completed). A compare-and-set on the study's current stage makes exactly one caller do it.

    Finished trials are written to the study's Optuna view before any of that, and in between at
    most every ``MIRROR_INTERVAL`` seconds per process (see :func:`mirror_optuna_view`).

    Args:
        storage: The database.
        study_id: The study.
        progress: The study's progress if the caller just read it (``Storage.finish`` returns it);
            read from storage otherwise.

    Returns:
        Ids of the PENDING trials this call created (to be dispatched by a remote executor).
    """
    progress = progress or storage.progress(study_id)
    study, created, unfinished = progress.study, progress.created, progress.unfinished
    spec = study_spec(study)
    stage = study.current_stage
    n_stage = spec.search.stages[stage].trials
    too_many_failed = progress.failed > spec.limits.max_failed_trials
    running = study.state == StudyState.RUNNING
    # The Optuna view is complete before a stage moves on or the study ends.
    done = created >= n_stage and not unfinished
    mirror_optuna_view(storage, study_id, force=done or too_many_failed or not running)
    if not running:
        return []
    if too_many_failed:
        limit = spec.limits.max_failed_trials
        reason = f"{progress.failed} failed trials, more than limits.max_failed_trials={limit}"
        storage.fail_study(study_id, reason)
        return []
    if created < n_stage:  # a sequential strategy proposes more trials as earlier ones finish
        return top_up(storage, spec, study_id, stage, created, unfinished)
    if unfinished:
        return []
    if stage + 1 < len(spec.search.stages):
        draft = next_stage_draft(storage, spec, study_id, stage)
        if not storage.advance(study_id, stage, draft):
            return []
        return pending_ids(storage, study_id, draft.index, [t.number for t in draft.trials])
    if not best_trials(storage, study_id, spec, 1):
        # A study none of whose trials completed has no result: it failed, whatever its stages did.
        storage.fail_study(study_id, _nothing_completed(storage, study_id))
        return []
    if storage.advance(study_id, stage, None):
        evaluate_on_test(storage, spec, study_id)
    return []


def _nothing_completed(storage: Storage, study_id: int) -> str:
    counts = storage.counts(study_id)
    failed = storage.trials(study_id, states=(TrialState.FAIL,))
    first = f"; trial {failed[0].number}: {failed[0].reason}" if failed else ""
    return f"no trial completed ({counts[TrialState.FAIL]} failed, {counts[TrialState.PRUNED]} pruned){first}"


def mirror_optuna_view(storage: Storage, study_id: int, *, force: bool = False) -> None:
    """Write the study's finished, unmirrored trials to its Optuna study if due: when ``force``d,
    or when this process last did so more than ``MIRROR_INTERVAL`` seconds ago and no other
    process is doing it (a forced mirror waits for that one). A failure is logged, not raised:
    the results are stored, and a later call (or ``Storage.sync``) writes them.
    """
    key, now = (storage.url, study_id), time.monotonic()
    if not force and now - _last_mirror.get(key, -math.inf) < MIRROR_INTERVAL:
        return
    _last_mirror[key] = now
    try:
        # Between a stage's ends, a process that finds another one mirroring the study goes on
        # (with 32 pool processes on a study, each of them waited its turn about once a second).
        storage.mirror(study_id, wait=force)
    except Exception as exc:  # the results are stored; the next mirror or sync() writes them
        log.warning("Optuna view of study %s not updated (the next mirror retries): %s", study_id, exc)
