"""Creating studies, running trials and advancing stages: the logic every executor shares.

The local executor (:mod:`hpo._local`) and the Celery tasks (``workers/``) are thin loops around
these functions. The database is the only truth: a function here reads what it needs from
storage, does its work, and writes the result back with a compare-and-set, so a second delivery
of the same work, or two processes racing to advance the same study, change nothing.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna

import engine

from ._errors import HPOError
from ._executor import Executor
from ._training import format_bytes, load_data, memory_limit, train_memory, train_network
from .samplers import (
    NarrowingRule,
    narrow_space,
    sample_params,
    space_from_json,
    space_to_json,
    trial_rng,
)
from .spec import StudySpec, TrainSpec
from .storage import StageDraft, Storage, StudyProgress, StudyRow, TrialRow, TrialState

__all__ = [
    "TrialReport",
    "advance",
    "dispatch_trials",
    "execute_trial",
    "first_stage_draft",
    "hard_bounds",
    "mirror_optuna_view",
    "objective_value",
    "reap",
    "run_trial",
    "search_space",
    "study_spec",
    "submit_study",
    "trial_seed",
]

log = logging.getLogger(__name__)

# Sequential samplers propose one trial at a time from the finished ones; these keep a bounded
# number of trials in flight instead of creating a whole stage up front.
SEQUENTIAL_SAMPLERS = frozenset({"tpe", "cmaes"})
LEASE_SECONDS = 60.0
DEFAULT_IN_FLIGHT = 4
# A process writes a study's finished trials to its Optuna view at most this often while a stage
# runs (always at a stage's end): short trials are mirrored in batches, long ones as they finish.
MIRROR_INTERVAL = 1.0
_last_mirror: dict[tuple[str, int], float] = {}
# Datasets a worker process keeps loaded between trials (trials of a study share one split).
DATA_CACHE_SIZE = 2
_DATA_CACHE: dict[str, engine.Dataset] = {}


# ---------------------------------------------------------------------------------------------
# Spec helpers


def study_spec(study: StudyRow) -> StudySpec:
    """The validated spec a study was submitted with (parsed once per process: specs are frozen)."""
    return _parse_spec(study.spec)


@functools.lru_cache(maxsize=64)
def _parse_spec(spec_json: str) -> StudySpec:
    return StudySpec.model_validate_json(spec_json)


def search_space(spec: StudySpec) -> dict[str, optuna.distributions.BaseDistribution]:
    """The first stage's space: the parameters section as Optuna distributions."""
    space: dict[str, optuna.distributions.BaseDistribution] = {}
    for name, p in spec.search.parameters.items():
        if p.type == "float":
            space[name] = optuna.distributions.FloatDistribution(p.low, p.high, log=p.log)
        elif p.type == "int":
            space[name] = optuna.distributions.IntDistribution(p.low, p.high, log=p.log, step=p.step)
        else:
            space[name] = optuna.distributions.CategoricalDistribution(list(p.choices))
    return space


def hard_bounds(spec: StudySpec) -> dict[str, tuple[float | None, float | None]]:
    """The limits no narrowed window may cross, per numeric parameter.

    A parameter's own ``bounds`` when given; otherwise the limits its field allows (``dropout``
    below 1, ``lr`` above 0, a layer width of at least 1), so panning never produces values the
    trial would reject.
    """
    out: dict[str, tuple[float | None, float | None]] = {}
    targets = spec.parameter_targets()
    for name, p in spec.search.parameters.items():
        if p.type == "categorical":
            continue
        bounds = getattr(p, "bounds", None)
        if bounds is not None:
            out[name] = (float(bounds[0]), float(bounds[1]))
        else:
            out[name] = _field_limits(*targets[name], log=p.log)
    return out


_VIRTUAL_LIMITS = {("model", "width"): (1.0, 65536.0), ("model", "depth"): (0.0, 64.0)}


def _field_limits(section: str, field: str, *, log: bool) -> tuple[float | None, float | None]:
    """The closed interval a field's own constraints (ge/gt/le/lt) allow."""
    import annotated_types as at

    from .spec import ModelSpec, TrainingSpec

    if (section, field) in _VIRTUAL_LIMITS:
        return _VIRTUAL_LIMITS[(section, field)]
    model = {"model": ModelSpec, "training": TrainingSpec}[section]
    lo: float | None = None
    hi: float | None = None
    for meta in model.model_fields[field].metadata:
        if isinstance(meta, at.Ge):
            lo = float(meta.ge)  # type: ignore[arg-type]
        elif isinstance(meta, at.Gt):
            lo = math.nextafter(float(meta.gt), math.inf)  # type: ignore[arg-type]
        elif isinstance(meta, at.Le):
            hi = float(meta.le)  # type: ignore[arg-type]
        elif isinstance(meta, at.Lt):
            hi = math.nextafter(float(meta.lt), -math.inf)  # type: ignore[arg-type]
    if log and lo is not None and lo < 1e-300:
        lo = None  # log ranges stay positive by construction
    return lo, hi


def narrowing_rule(spec: StudySpec) -> NarrowingRule:
    """The study's narrowing rule (defaults where the file is silent)."""
    n = spec.search.narrowing
    return NarrowingRule(
        top_fraction=n.top_fraction, min_top=n.min_top, margin=n.margin, min_width=n.min_width, pan=n.pan
    )


def trial_seed(study_seed: int, number: int) -> int:
    """The training seed of trial ``number``: a pure function of the study seed and the number."""
    return int(np.random.SeedSequence([study_seed, number, 0x5EED]).generate_state(1)[0])


def _stage_trials(spec: StudySpec, stage: int) -> int:
    return spec.search.stages[stage].trials


def _stage_epochs(spec: StudySpec, stage: int) -> int:
    return spec.search.stages[stage].epochs or spec.training.epochs


def _first_number(spec: StudySpec, stage: int) -> int:
    return sum(s.trials for s in spec.search.stages[:stage])


def in_flight_limit(spec: StudySpec) -> int:
    """How many trials of a sequential sampler (TPE, CMA-ES) may exist unfinished at once.

    A pure function of the spec, so that every process that tops a stage up (the submitter, any
    worker, local or remote) applies the same limit.
    """
    return spec.search.in_flight or DEFAULT_IN_FLIGHT


# ---------------------------------------------------------------------------------------------
# Proposing parameters


def _propose_batch(
    spec: StudySpec, space: dict[str, Any], numbers: Sequence[int], history: Sequence[TrialRow]
) -> list[tuple[int, dict[str, Any], int]]:
    """Parameters and seeds for the trials ``numbers`` of one stage.

    Narrowing and random search draw each trial from its own generator (seed, number), so the
    draw never depends on which process makes it. TPE and CMA-ES propose from the finished trials
    (``history``), through an in-memory Optuna study rebuilt from our table: our database stays
    the only truth, and the proposal is reproducible from it.
    """
    drafts = []
    if spec.search.sampler in SEQUENTIAL_SAMPLERS:
        study = _history_study(spec, space, history)
        for number in numbers:
            sampler = _sequential_sampler(spec.search.sampler, trial_seed(spec.seed, number))
            study.sampler = sampler
            trial = study.ask(space)
            params = dict(trial.params)
            # Leave the proposal in flight so that the next proposal of this batch avoids it.
            drafts.append((number, params, trial_seed(spec.seed, number)))
        return drafts
    for number in numbers:
        drafts.append(
            (number, sample_params(space, trial_rng(spec.seed, number)), trial_seed(spec.seed, number))
        )
    return drafts


def _sequential_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    from .samplers import make_sampler

    return make_sampler(name, seed=seed)


def _history_study(spec: StudySpec, space: dict[str, Any], history: Sequence[TrialRow]) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=spec.objective.direction)
    for row in sorted(history, key=lambda r: r.number):
        if set(row.params) != set(space):
            continue
        dists = {k: space[k] for k in row.params}
        if not all(dists[k]._contains(dists[k].to_internal_repr(v)) for k, v in row.params.items()):
            continue  # a value outside the current space cannot be told to the sampler
        if row.state == "COMPLETE" and row.value is not None:
            state, value = optuna.trial.TrialState.COMPLETE, row.value
        elif row.state in ("PENDING", "RUNNING"):
            state, value = optuna.trial.TrialState.RUNNING, None
        else:
            continue
        study.add_trial(
            optuna.trial.create_trial(state=state, value=value, params=row.params, distributions=dists)
        )
    return study


def first_stage_draft(spec: StudySpec) -> StageDraft:
    """Stage 0 of a new study: its space and its first trials."""
    space = search_space(spec)
    n = _stage_trials(spec, 0)
    if spec.search.sampler in SEQUENTIAL_SAMPLERS:
        n = min(n, in_flight_limit(spec))
    trials = _propose_batch(spec, space, range(n), [])
    return StageDraft(
        index=0,
        n_trials=_stage_trials(spec, 0),
        epochs=_stage_epochs(spec, 0),
        space_json=json.dumps(space_to_json(space)),
        trials=trials,
    )


def submit_study(storage: Storage, spec: StudySpec, *, queue: str | None = None) -> tuple[StudyRow, bool]:
    """Write a study, its first stage and that stage's trials, in one transaction.

    Returns:
        The study and whether it was created (False: the same spec was already submitted under
        this name, which is a no-op).

    Raises:
        StudyExistsError: a different spec exists under the same name.
    """
    return storage.create_study(
        spec.name or "",
        spec.canonical_json(),
        spec.spec_hash(),
        spec.objective.direction,
        first_stage_draft(spec),
        queue=queue,
        metric_name=spec.objective.metric,
    )


# ---------------------------------------------------------------------------------------------
# Running one trial


def objective_value(spec: StudySpec, history: Sequence[engine.EpochRecord]) -> float | None:
    """The trial's score: the objective metric at the last evaluated epoch, or its best."""
    metric = spec.objective.metric
    values = [getattr(r, metric) for r in history if getattr(r, metric) is not None]
    values = [float(v) for v in values if math.isfinite(v)]
    if not values:
        return None
    if spec.objective.reduce == "final":
        return values[-1]
    return max(values) if spec.objective.direction == "maximize" else min(values)


@dataclass(frozen=True)
class TrialReport:
    """What running one trial did."""

    trial_id: int
    number: int
    state: str
    value: float | None
    reason: str | None
    seconds: float
    recorded: bool
    """False when the result was not stored: the claim was lost (lease taken over, study
    cancelled) or another delivery already finished the trial."""


@dataclass
class _Claim:
    """A trial this process runs, as the heartbeat thread sees it."""

    storage: Storage
    trial_id: int
    worker: str
    lease: float
    attempt: int
    due: float
    lost: threading.Event


class _Heartbeats:
    """Renews the leases of the trials this process runs, from one thread per process.

    An epoch longer than the lease does not lose its trial, and the training loop learns that its
    claim is gone (a cancelled study, a lease taken over) through the claim's ``lost`` event. One
    long-lived thread serves every trial: starting a thread per trial cost ~0.2 ms a trial.
    """

    def __init__(self) -> None:
        self._claims: dict[int, _Claim] = {}
        self._lock = threading.Lock()
        self._changed = threading.Event()
        self._pid = -1  # the process whose thread runs (a forked child starts its own)

    @contextlib.contextmanager
    def hold(self, storage: Storage, trial: TrialRow, worker: str, lease: float) -> Iterator[threading.Event]:
        """Renew ``trial``'s lease every ``lease / 3`` seconds while the block runs.

        Yields:
            The claim's ``lost`` event, set when a renewal finds the claim gone.
        """
        claim = _Claim(storage, trial.id, worker, lease, trial.attempts, 0.0, threading.Event())
        claim.due = time.monotonic() + lease / 3
        with self._lock:
            if self._pid != os.getpid():
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="hpo-heartbeat", daemon=True).start()
            self._claims[trial.id] = claim
        self._changed.set()
        try:
            yield claim.lost
        finally:
            # A renewal racing the result's write changes nothing: it only extends the lease of a
            # claim that is still RUNNING.
            with self._lock:
                self._claims.pop(trial.id, None)

    def _run(self) -> None:
        while True:
            with self._lock:
                claims = list(self._claims.values())
            now = time.monotonic()
            for claim in claims:
                if claim.due <= now:
                    claim.due = now + claim.lease / 3
                    self._beat(claim)
            with self._lock:
                dues = [c.due for c in self._claims.values()]
            self._changed.wait(max(0.0, min(dues) - time.monotonic()) if dues else None)
            self._changed.clear()

    @staticmethod
    def _beat(claim: _Claim) -> None:
        try:
            if not claim.storage.heartbeat(claim.trial_id, claim.worker, claim.lease, attempt=claim.attempt):
                claim.lost.set()
        except Exception:  # a blip in the database must not kill the trial; the next beat retries
            log.warning("heartbeat of trial %s failed", claim.trial_id, exc_info=True)


_heartbeats = _Heartbeats()


def _pruner(spec: StudySpec) -> optuna.pruners.BasePruner | None:
    p = spec.pruner
    if p.kind == "none":
        return None
    if p.kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=p.warmup_epochs)
    if p.kind == "percentile":
        return optuna.pruners.PercentilePruner(
            p.percentile, n_startup_trials=5, n_warmup_steps=p.warmup_epochs
        )
    return optuna.pruners.HyperbandPruner(min_resource=max(1, p.warmup_epochs))


class _PruneCheck:
    """Asks an Optuna pruner, after each evaluated epoch, whether to stop this trial.

    The pruner sees the finished trials of the same stage (same epoch budget) with their
    per-epoch objective values, read once when the trial starts.
    """

    def __init__(self, spec: StudySpec, storage: Storage, trial: TrialRow) -> None:
        self.pruner = _pruner(spec)
        self.study: optuna.Study | None = None
        self.trial_number = -1
        if self.pruner is None:
            return
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.study = optuna.create_study(direction=spec.objective.direction, pruner=self.pruner)
        peers = storage.trials(trial.study_id, states=("COMPLETE", "PRUNED"), stage=trial.stage)
        for row in peers:
            inter = {int(k): float(v) for k, v in (row.intermediate or {}).items()}
            if not inter:
                continue
            state = (
                optuna.trial.TrialState.COMPLETE
                if row.state == "COMPLETE"
                else optuna.trial.TrialState.PRUNED
            )
            value = row.value if row.state == "COMPLETE" else inter[max(inter)]
            if value is None:
                continue
            self.study.add_trial(
                optuna.trial.create_trial(state=state, value=value, intermediate_values=inter)
            )
        self.trial = self.study.ask()

    def should_prune(self, epoch: int, value: float) -> bool:
        if self.study is None:
            return False
        self.trial.report(value, epoch)
        return self.trial.should_prune()


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
    spec = study_spec(study or storage.get_study_by_id(trial.study_id))
    start = time.perf_counter()
    curves: list[dict[str, Any]] = []
    intermediate: dict[int, float] = {}
    state, value, reason = "FAIL", None, None
    interrupted = data_error = False
    try:
        train_spec = spec.trial_spec(trial.params, trial.stage, seed=trial.seed)
        data = _trial_data(train_spec, data_cache)
        too_big = _does_not_fit(train_spec, data)
        if too_big:
            raise _TrialFailedError(too_big)
        prune = _PruneCheck(spec, storage, trial)
        pruned = False

        with _heartbeats.hold(storage, trial, worker, lease) as lost:

            def on_epoch(record: engine.EpochRecord) -> bool:
                nonlocal pruned, interrupted
                curves.append(_record_dict(record))
                metric = getattr(record, spec.objective.metric)
                if metric is not None and math.isfinite(metric):
                    intermediate[record.epoch] = float(metric)
                    if prune.should_prune(record.epoch, float(metric)):
                        pruned = True
                        return True
                if lost.is_set():
                    return True
                if should_stop is not None and should_stop():
                    interrupted = True
                    return True
                return False

            run = train_network(
                train_spec, callback=on_epoch, time_limit=spec.limits.trial_time_limit, data=data
            )
            if lost.is_set() or interrupted:
                if interrupted:
                    storage.release(trial.id, worker, attempt=trial.attempts)
                return TrialReport(trial.id, trial.number, "RUNNING", None, "interrupted", 0.0, False)
        state, value, reason = _outcome(spec, run.result, pruned)
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
    progress = storage.finish(
        trial.id, worker, state, value, reason, curves, intermediate, attempt=trial.attempts
    )
    if progress is not None and data_error:
        # The submitter may not see the workers' files (broker mode), so this is where a missing
        # or malformed dataset is found: the study stops FAILED with the reason, not COMPLETE.
        storage.fail_study(trial.study_id, f"the data cannot be loaded on {worker}: {reason}")
    if progress is not None:
        new = advance(storage, trial.study_id, progress)
        if new and on_new_trials is not None:
            on_new_trials(new)
    return TrialReport(trial.id, trial.number, state, value, reason, seconds, progress is not None)


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
) -> tuple[str, float | None, str | None]:
    """The (state, value, reason) a finished training run records."""
    outcome = result.outcome
    if outcome is engine.Outcome.COMPLETED:
        value = objective_value(spec, result.history)
        if value is None:
            return "FAIL", None, "no evaluated epoch produced a finite objective"
        return "COMPLETE", value, None
    if outcome is engine.Outcome.STOPPED and pruned:
        return "PRUNED", None, f"pruned after epoch {len(result.history)}"
    return "FAIL", None, result.reason or outcome.value


def _record_dict(r: engine.EpochRecord) -> dict[str, Any]:
    return {
        "epoch": r.epoch,
        "train_loss": r.train_loss,
        "train_acc": r.train_acc,
        "val_loss": r.val_loss,
        "val_acc": r.val_acc,
        "seconds": round(r.seconds, 6),
    }


# ---------------------------------------------------------------------------------------------
# Advancing a study


def advance(storage: Storage, study_id: int, progress: StudyProgress | None = None) -> list[int]:
    """Move the study on if its current stage allows it; safe to call from any process, any time.

    - Too many failed trials: the study fails with that reason.
    - A sequential sampler's stage not fully created yet: top up its in-flight trials.
    - Every trial of the stage finished: the next stage's space is narrowed from this stage's
      trials and its trials are written, or after the last stage the best trial is evaluated on
      the test split and the study completes. A compare-and-set on the study's current stage
      makes exactly one caller do it.

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
    too_many_failed = progress.failed > spec.limits.max_failed_trials
    stage_done = created >= _stage_trials(spec, stage) and not unfinished
    # The Optuna view is complete before a stage moves on or the study ends.
    mirror_optuna_view(storage, study_id, force=stage_done or too_many_failed or study.state != "RUNNING")
    if study.state != "RUNNING":
        return []
    if too_many_failed:
        limit = spec.limits.max_failed_trials
        reason = f"{progress.failed} failed trials, more than limits.max_failed_trials={limit}"
        storage.fail_study(study_id, reason)
        return []
    n_stage = _stage_trials(spec, stage)
    if created < n_stage:
        # Sequential sampler: propose more trials as earlier ones finish.
        room = in_flight_limit(spec) - unfinished
        if room <= 0:
            return []
        first = _first_number(spec, stage) + created
        numbers = range(first, first + min(room, n_stage - created))
        space = space_from_json(json.loads(storage.stages(study_id)[stage].space))
        history = storage.trials(study_id)
        if not storage.add_trials(study_id, stage, _propose_batch(spec, space, numbers, history)):
            return []
        return _pending_ids(storage, study_id, stage, numbers)
    if unfinished:
        return []
    if stage + 1 < len(spec.search.stages):
        draft = _next_stage_draft(storage, spec, study_id, stage)
        if not storage.advance(study_id, stage, draft):
            return []
        return _pending_ids(storage, study_id, draft.index, [number for number, _, _ in draft.trials])
    if not best_trials(storage, study_id, spec, 1):
        # A study none of whose trials completed has no result: it failed, whatever its stages did.
        storage.fail_study(study_id, _nothing_completed(storage, study_id))
        return []
    if storage.advance(study_id, stage, None):
        _evaluate_on_test(storage, spec, study_id)
    return []


def _nothing_completed(storage: Storage, study_id: int) -> str:
    counts = storage.counts(study_id)
    failed = storage.trials(study_id, states=("FAIL",))
    first = f"; trial {failed[0].number}: {failed[0].reason}" if failed else ""
    return f"no trial completed ({counts[TrialState.FAIL]} failed, {counts[TrialState.PRUNED]} pruned){first}"


def mirror_optuna_view(storage: Storage, study_id: int, *, force: bool = False) -> None:
    """Write the study's finished, unmirrored trials to its Optuna study if due: when ``force``d,
    or when this process last did so more than ``MIRROR_INTERVAL`` seconds ago. A failure is
    logged, not raised: the results are stored, and a later call (or ``Storage.sync``) writes them.
    """
    key, now = (storage.url, study_id), time.monotonic()
    if not force and now - _last_mirror.get(key, -math.inf) < MIRROR_INTERVAL:
        return
    _last_mirror[key] = now
    try:
        storage.mirror(study_id)
    except Exception as exc:  # the results are stored; the next mirror or sync() writes them
        log.warning("Optuna view of study %s not updated (the next mirror retries): %s", study_id, exc)


def _pending_ids(storage: Storage, study_id: int, stage: int, numbers: Sequence[int]) -> list[int]:
    wanted = set(numbers)
    return [t.id for t in storage.trials(study_id, states=("PENDING",), stage=stage) if t.number in wanted]


def _next_stage_draft(storage: Storage, spec: StudySpec, study_id: int, stage: int) -> StageDraft:
    space = space_from_json(json.loads(storage.stages(study_id)[stage].space))
    if spec.search.sampler == "narrowing":
        finished = [
            (r.params, r.value)
            for r in storage.trials(study_id, states=("COMPLETE",), stage=stage)
            if r.value is not None
        ]
        initial = search_space(spec)
        space = narrow_space(
            space,
            finished,
            spec.objective.direction,
            narrowing_rule(spec),
            initial_space=initial,
            hard_bounds=hard_bounds(spec),
        )
    nxt = stage + 1
    n = _stage_trials(spec, nxt)
    if spec.search.sampler in SEQUENTIAL_SAMPLERS:
        n = min(n, in_flight_limit(spec))
    first = _first_number(spec, nxt)
    history = storage.trials(study_id)
    trials = _propose_batch(spec, space, range(first, first + n), history)
    return StageDraft(
        index=nxt,
        n_trials=_stage_trials(spec, nxt),
        epochs=_stage_epochs(spec, nxt),
        space_json=json.dumps(space_to_json(space)),
        trials=trials,
    )


def best_trials(storage: Storage, study_id: int, spec: StudySpec, k: int = 1) -> list[TrialRow]:
    """The ``k`` best finished trials, best first (later stages win ties: longer training)."""
    return storage.best_trials(study_id, spec.objective.direction, k)


def _evaluate_on_test(storage: Storage, spec: StudySpec, study_id: int) -> None:
    """Retrain the best trial with its own seed and score it once on the held-out test split.

    The retrained run must reproduce the stored validation score exactly (invariant I3); the
    result records whether it did.
    """
    best = best_trials(storage, study_id, spec, 1)
    if not best:
        storage.set_test_result(study_id, {"error": "no finished trial to evaluate"})
        return
    trial = best[0]
    try:
        train_spec = spec.trial_spec(trial.params, trial.stage, seed=trial.seed)
        run = train_network(train_spec)
        reproduced = objective_value(spec, run.result.history)
        result = {
            "trial_number": trial.number,
            "params": trial.params,
            "test_acc": run.test_accuracy(),
            "test_size": int(run.data.test.x.shape[0]),
            "val_value": trial.value,
            "reproduced_value": reproduced,
            "reproduced": reproduced == trial.value,
        }
    except Exception as exc:
        result = {"trial_number": trial.number, "error": f"{type(exc).__name__}: {exc}"}
    storage.set_test_result(study_id, result)


# ---------------------------------------------------------------------------------------------
# Remote execution (a message queue carries trial ids; the database holds everything else)


def dispatch_trials(storage: Storage, executor: Executor, trial_ids: Sequence[int]) -> None:
    """Send trials to the queue and record when (the reaper re-sends what the broker lost)."""
    if trial_ids:
        executor.dispatch(trial_ids)
        storage.mark_enqueued(trial_ids)


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
    claimed = storage.claim_with_study(trial_id, worker, lease, queues=queues)
    if claimed is None:
        return "skipped"
    trial, study = claimed
    new_trials = None if executor is None else (lambda ids: dispatch_trials(storage, executor, ids))
    report = run_trial(
        storage, trial, worker, lease=lease, data_cache=_DATA_CACHE, on_new_trials=new_trials, study=study
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
    mine = {s.id: s for s in storage.list_studies() if s.state == "RUNNING" and s.queue == executor.queue}
    for study_id, study in mine.items():
        cap = study_spec(study).limits.max_attempts
        moved = set(storage.requeue_expired(max_attempts=cap, study_id=study_id))
        requeued: list[int] = []
        if moved:
            # Re-send these now: the dead worker's message may still sit among Redis's unacked
            # messages until the visibility timeout, so "is it queued?" would wrongly say yes.
            requeued = [t.id for t in storage.trials(study_id, states=("PENDING",)) if t.id in moved]
        # Every study is advanced: a stage whose last trial's worker died between recording it
        # and advancing moves on here (and finished trials reach the Optuna view).
        dispatch_trials(storage, executor, requeued + advance(storage, study_id))
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


class OrchestrationError(HPOError):
    """A study cannot be run as asked."""
