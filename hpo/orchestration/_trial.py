"""Running one trial: train (or resume) its network, heartbeat its lease, prune, checkpoint,
record the outcome."""

from __future__ import annotations

import logging
import math
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import engine

from ..spec import StudySpec, TrainSpec
from ..storage import Storage, StorageError, StudyProgress, StudyRow, TrialOutcome, TrialRow, TrialState
from ._advance import advance_study
from ._checkpoints import TrialCheckpoints
from ._heartbeats import heartbeats
from ._pruning import PruneCheck
from ._studies import objective_value, study_spec
from ._synthetic import SyntheticRun
from ._training import build_trainer, format_bytes, load_data, memory_limit, train_memory

__all__ = ["DATA_CACHE_SIZE", "LEASE_SECONDS", "TrialReport", "run_trial"]

log = logging.getLogger("hpo.orchestration")

LEASE_SECONDS = 60.0
# Datasets a worker process keeps loaded between trials (trials of a study share one split).
DATA_CACHE_SIZE = 2


@dataclass(frozen=True)
class TrialReport:
    """What running one trial did."""

    trial_id: int
    number: int
    state: TrialState
    value: float | None
    reason: str | None
    seconds: float
    recorded: bool
    """False when the result was not stored: the claim was lost (lease taken over, study
    cancelled) or another delivery already finished the trial."""
    finish_seconds: float = 0.0
    """How long recording the outcome took (``Storage.finish``: one transaction)."""
    advance_seconds: float = 0.0
    """How long advancing the study took afterwards (the Optuna view, the next stage)."""


def run_trial(
    storage: Storage,
    trial: TrialRow,
    worker: str,
    *,
    lease: float = LEASE_SECONDS,
    data_cache: dict[str, engine.Dataset] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_new_trials: Callable[[list[int]], None] | None = None,
    study: StudyRow | None = None,
) -> TrialReport:
    """Train a claimed trial and record its outcome, then advance the study if its stage is done.

    With the study's artifact store, the run saves a checkpoint every ``checkpoints.every``
    epochs (a retry of a trial whose worker died resumes from the latest) and a ``COMPLETE``
    trial saves its final checkpoint as its model; a store that fails is logged and never fails
    the trial. A trial that continues another trial's network (``parent_id``: promotion across
    stages) resumes from that trial's model and trains on to its own stage's epochs; when that
    model cannot be used (no store, gone, unreadable, not fitting) it trains from scratch with
    the same parameters and seed (the same network: the engine continues a run exactly).

    Every recorded outcome (``COMPLETE``, ``PRUNED``, ``FAIL``) says what the trial's training
    cost (see :class:`_Epochs`): ``epochs_trained``, the last epoch its network completed minus
    the epochs of the trial whose network it continues (0 without one; a retry resumed from the
    trial's own checkpoint counts the epochs before it, which the trial trained), and
    ``train_seconds``, the wall seconds spent in training, including those its earlier attempts
    recorded in the checkpoint it resumed from. A trial that fails before it
    trains (its data, its memory) records 0 and 0.0.

    Args:
        storage: The database.
        trial: A trial this worker has claimed (state RUNNING, ``worker`` is ours).
        worker: The claiming worker's id.
        lease: Seconds a lease lasts; renewed every third of it while training.
        data_cache: Datasets already loaded by this process, by spec JSON (trials of one study
            share one split, so a worker loads it once).
        should_stop: Polled after every epoch; True interrupts the trial (Ctrl-C), which is then
            released back to PENDING rather than recorded.
        on_new_trials: Called with the ids of trials that finishing this one created (the next
            stage), after they are committed; a remote executor dispatches them.
        study: The trial's study, if the caller has it (read from storage otherwise).
    """
    # Long for its contract (a third is the docstring): one trial's whole life, read top to bottom.
    study = study or storage.get_study_by_id(trial.study_id)
    spec = study_spec(study)
    start = time.perf_counter()
    epochs = _Epochs(spec, should_stop)
    state, value, reason, model = TrialState.FAIL, None, None, None
    data_error = False
    saver: TrialCheckpoints | None = None
    try:
        train_spec = spec.trial_spec(trial.params, trial.stage, seed=trial.seed)
        if spec.synthetic is None:
            data = _trial_data(train_spec, data_cache)
            too_big = _does_not_fit(train_spec, data)
            if too_big:
                raise _TrialFailedError(too_big)
            saver = epochs.saver = TrialCheckpoints(
                storage, study, trial, worker, spec.checkpoints.every, train_spec.training.epochs
            )
        epochs.prune = PruneCheck(spec, storage, trial)
        with heartbeats.hold(storage, trial, worker, lease) as epochs.lost:
            if saver is None:  # synthetic: no data, no network, nothing saved
                trainer: engine.Trainer | SyntheticRun = SyntheticRun(
                    spec, trial.params, train_spec.training.epochs, train_spec.seed, epochs
                )
            else:
                trainer = _trainer(train_spec, data, epochs, spec.limits.trial_time_limit, saver)
            result = epochs.train(trainer)
        if epochs.lost.is_set() or epochs.interrupted:
            if epochs.interrupted:  # Ctrl-C: handed back, not counted as an attempt
                storage.release(trial.id, worker, attempt=trial.attempts)
            return TrialReport(trial.id, trial.number, TrialState.RUNNING, None, "interrupted", 0.0, False)
        state, value, reason = _outcome(spec, result, epochs.pruned)
        if state is TrialState.COMPLETE and saver is not None:
            model = saver.save_model()
    except _TrialFailedError as exc:
        reason = str(exc)
    except engine.DatasetError as exc:
        # Every trial of the study shares its data: the study cannot go on (see below).
        data_error, reason = True, f"dataset.{exc.field}: {exc}"
    except MemoryError:
        reason = f"MemoryError: the network did not fit in this host's {format_bytes(memory_limit())}"
    except Exception as exc:  # a trial's failure is data, not a crash of the worker
        reason = f"{type(exc).__name__}: {exc}"
        log.warning("trial %s failed:\n%s", trial.number, traceback.format_exc())
    seconds = time.perf_counter() - start
    outcome = epochs.outcome(state, value, reason, model)
    finishing = time.perf_counter()
    progress = _record(storage, trial, worker, outcome, lease)
    finished = time.perf_counter()
    if saver is not None:
        saver.after_finish(progress is not None, model)
    if progress is not None and data_error:
        # The submitter may not see the workers' files (broker mode), so this is where a missing
        # or malformed dataset is found: the study stops FAILED with the reason, not COMPLETE.
        storage.fail_study(trial.study_id, f"the data cannot be loaded on {worker}: {reason}")
    if progress is not None:
        new = advance_study(storage, trial.study_id, progress)
        if new and on_new_trials is not None:
            on_new_trials(new)
    return TrialReport(
        trial.id,
        trial.number,
        state,
        value,
        reason,
        seconds,
        progress is not None,
        finish_seconds=finished - finishing,
        advance_seconds=time.perf_counter() - finished,
    )


def _record(
    storage: Storage, trial: TrialRow, worker: str, outcome: TrialOutcome, lease: float
) -> StudyProgress | None:
    """``storage.finish``, retried while the database cannot be reached, for as long as the claim
    may still hold (``lease`` seconds: nothing renews it once training has ended).

    A network blip as the trial ends then costs a second, not the trial's whole run; a longer
    outage (this host lost its network) gives up with one line, not a traceback: the reaper of a
    worker that still reaches the database requeues the trial once its lease expires, and a late
    write from here would be refused (``finish`` checks the claim's worker and attempt).
    """
    deadline = time.monotonic() + lease
    delay = 0.1
    while True:
        try:
            return storage.finish(trial.id, worker, outcome, attempt=trial.attempts)
        except StorageError as exc:
            if type(exc) is not StorageError:  # a study gone or in the wrong state: not an outage
                raise
            left = deadline - time.monotonic()
            if left <= 0:  # the lease has lapsed: the trial is the reaper's now
                log.warning(
                    "trial %s: result not recorded, the database was unreachable for the rest of its "
                    "%g s lease (%s); a worker that reaches it runs the trial again",
                    trial.number,
                    lease,
                    exc,
                )
                return None
        time.sleep(min(delay, left))
        delay = min(delay * 2, 2.0)


def _trainer(
    train_spec: TrainSpec,
    data: engine.Dataset,
    epochs: _Epochs,
    time_limit: float | None,
    saver: TrialCheckpoints,
) -> engine.Trainer:
    """The trial's trainer, resumed from the first of these that fits (its curves so far then
    come from it): the trial's checkpoint, when a previous attempt left one; the model of the
    trial it continues, when it was promoted (that trial's epochs are then inherited, not this
    one's, also on a retry whose checkpoint continues them); else started afresh."""
    number, parent = saver.trial.number, saver.parent_point()
    for point in (saver.resume_point(), parent):
        trainer = _resumed(train_spec, data, epochs, time_limit, point)
        if trainer is not None and point is not None:
            epochs.start_from(point)
            if parent is not None and _continues(point, parent):
                epochs.inherit(parent)
            if point is parent:
                log.info("trial %s continues its parent's model from epoch %s", number, point.epoch)
            break
    else:
        if saver.trial.parent_id is not None:
            log.warning("trial %s trains from scratch (its parent's parameters and seed)", number)
        trainer = build_trainer(train_spec, data, callback=epochs, time_limit=time_limit)
    saver.trainer, saver.preprocessing = trainer, data.preprocessing
    return trainer


def _resumed(
    train_spec: TrainSpec,
    data: engine.Dataset,
    epochs: _Epochs,
    time_limit: float | None,
    point: engine.Checkpoint | None,
) -> engine.Trainer | None:
    """The trial's trainer resumed from ``point``, or None (no point, or one that does not fit)."""
    if point is None:
        return None
    try:
        return build_trainer(train_spec, data, callback=epochs, time_limit=time_limit, resume_from=point)
    except engine.CheckpointError as exc:
        log.warning("checkpoint does not fit the trial, not used: %s", exc)
        return None


def _continues(point: engine.Checkpoint, parent: engine.Checkpoint) -> bool:
    """Whether the run saved in ``point`` continues ``parent``'s: its first epochs are the
    parent's, timings included (a run from scratch never repeats those to the last bit)."""
    if point is parent:
        return True
    if point.trainer is None or parent.trainer is None:
        return False
    history = parent.trainer.history
    return point.trainer.history[: len(history)] == history


class _Epochs:
    """The trainer's epoch callback for one trial: records the curves and intermediate values,
    asks the pruner, and stops the run when its claim is lost or the process is told to stop.

    It also accounts the trial's compute, as :attr:`trained` and :attr:`train_seconds`:

    * epochs: the last epoch the network completed (a checkpoint's, then each recorded epoch's;
      an epoch a run diverged or timed out in is not complete) minus :attr:`inherited_epochs`;
    * seconds: the wall seconds of :meth:`train` plus those the resumed checkpoint carries from
      earlier attempts (the engine's ``TrainerPosition.seconds``: an earlier attempt's seconds
      after its last checkpoint are lost with it, as are the epochs it trained after it, which
      this attempt trains again), minus :attr:`inherited_seconds`.
    """

    def __init__(self, spec: StudySpec, should_stop: Callable[[], bool] | None) -> None:
        self.metric = spec.objective.metric
        self.should_stop = should_stop
        self.prune: PruneCheck | None = None
        self.lost = threading.Event()  # replaced by the heartbeat's event of the claim
        self.curves: list[dict[str, Any]] = []
        self.intermediate: dict[int, float] = {}
        self.pruned = self.interrupted = False
        self.saver: TrialCheckpoints | None = None
        # Where the trial's network started when it continues another trial's network (promotion
        # across stages): the epoch and the training seconds that network's checkpoint records
        # (set on every attempt by inherit; 0 when it starts from scratch). They are the other
        # trial's, so not counted as this one's. A trial's own checkpoint (a retry resumed after
        # its worker died) is not inherited: the trial trained its epochs, but for those of its
        # parent that it starts with.
        self.inherited_epochs = 0
        self.inherited_seconds = 0.0
        self.last_epoch = 0  # the last epoch the network completed
        self.carried_seconds = 0.0  # training seconds the resumed checkpoint records
        self.train_seconds = 0.0
        """Wall seconds this trial spent training (set by :meth:`train`)."""

    @property
    def trained(self) -> int:
        """The epochs this trial trained itself (0 when it failed before training)."""
        return max(0, self.last_epoch - self.inherited_epochs)

    def inherit(self, parent: engine.Checkpoint) -> None:
        """The run continues ``parent``, another trial's network: its epochs are not this trial's."""
        position = parent.trainer
        if position is not None:
            self.inherited_epochs, self.inherited_seconds = position.epoch, position.seconds

    def outcome(
        self, state: TrialState, value: float | None, reason: str | None, model: str | None
    ) -> TrialOutcome:
        """The outcome to record: the given result with this run's curves and compute."""
        return TrialOutcome(
            state,
            value,
            reason,
            self.curves,
            self.intermediate,
            model=model,
            epochs_trained=self.trained,
            train_seconds=self.train_seconds,
        )

    def train(self, trainer: engine.Trainer | SyntheticRun) -> engine.TrainResult:
        """``trainer.fit()``, its wall seconds added to those carried (even when it raises)."""
        start = time.perf_counter()
        try:
            return trainer.fit()
        finally:
            spent = self.carried_seconds + time.perf_counter() - start
            self.train_seconds = max(0.0, spent - self.inherited_seconds)

    def start_from(self, checkpoint: engine.Checkpoint) -> None:
        """Continue a run resumed from ``checkpoint``: its epochs and seconds so far are done."""
        position = checkpoint.trainer
        if position is not None:
            self.last_epoch, self.carried_seconds = position.epoch, position.seconds
        history = () if position is None else position.history
        for record in history:
            self.curves.append(record.as_dict())
            metric = getattr(record, self.metric)
            if metric is not None and math.isfinite(metric):
                self.intermediate[record.epoch] = float(metric)

    def __call__(self, record: engine.EpochRecord) -> bool:
        """True stops the run after this epoch."""
        self.last_epoch = record.epoch
        self.curves.append(record.as_dict())
        metric = getattr(record, self.metric)
        if metric is not None and math.isfinite(metric):
            self.intermediate[record.epoch] = float(metric)
            if self.prune is not None and self.prune.should_prune(record.epoch, float(metric)):
                self.pruned = True
                return True
        if self.lost.is_set():
            return True
        if self.should_stop is not None and self.should_stop():
            self.interrupted = True
            return True
        if self.saver is not None:
            self.saver.after_epoch(record.epoch)
        return False


class _TrialFailedError(Exception):
    """A trial that fails for a reason known before it trains (its message is the reason)."""


def _trial_data(train_spec: TrainSpec, cache: dict[str, engine.Dataset] | None) -> engine.Dataset:
    """The trial's dataset, from this process's cache when it holds it (a long-lived worker sees
    many studies: the cache keeps the last ``DATA_CACHE_SIZE``)."""
    key = train_spec.dataset.model_dump_json() + train_spec.training.dtype
    data = None if cache is None else cache.get(key)
    if data is None:
        data = load_data(train_spec.dataset, train_spec.training.dtype)
        if cache is not None:
            cache[key] = data
            for old in list(cache)[:-DATA_CACHE_SIZE]:
                del cache[old]
    return data


def _does_not_fit(train_spec: TrainSpec, data: engine.Dataset) -> str | None:
    """Why the trial's network cannot fit in this host's memory, or None (checked before any of
    its arrays is allocated: a MemoryError half-way through would be slower and less clear)."""
    needed, limit = train_memory(train_spec.model, train_spec.training, data), memory_limit()
    if needed <= limit:
        return None
    return (
        f"the network does not fit in memory: training it needs at least {format_bytes(needed)}, "
        f"this host has {format_bytes(limit)}"
    )


def _outcome(
    spec: StudySpec, result: engine.TrainResult, pruned: bool
) -> tuple[TrialState, float | None, str | None]:
    """The (state, value, reason) a finished training run records."""
    outcome = result.outcome
    if outcome is engine.Outcome.COMPLETED:
        value = objective_value(spec, result.history)
        if value is None:
            return TrialState.FAIL, None, "no evaluated epoch produced a finite objective"
        return TrialState.COMPLETE, value, None
    if outcome is engine.Outcome.STOPPED and pruned:
        return TrialState.PRUNED, None, f"pruned after epoch {len(result.history)}"
    return TrialState.FAIL, None, result.reason or outcome.value
