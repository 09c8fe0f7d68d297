"""The embedded default: run a study in local worker processes, with no server.

Workers are forked from the command's process, which configured BLAS before NumPy loaded (see
:mod:`hpo._blas`) and has already loaded the study's dataset: a worker starts in milliseconds and
shares the data copy-on-write. Each worker claims trials from the database, trains them and
records them, exactly as a Celery worker does; the parent only watches the database and draws
progress. A worker that dies is replaced; its trial goes back to the queue when its lease expires
(or at once, when the parent sees the process gone).
"""

from __future__ import annotations

import multiprocessing as mp
import multiprocessing.connection
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .._errors import HPOError
from ..storage import Storage, StudyRow, StudyState, TrialState

__all__ = [
    "LocalRunInterruptedError",
    "Progress",
    "default_workers",
    "local_runner",
    "run_local",
    "runner_gone",
    "shown_state",
]

POLL_SECONDS = 0.05


class LocalRunInterruptedError(HPOError):
    """The local run was interrupted (Ctrl-C); the database is consistent and resumable."""


def default_workers() -> int:
    """One worker per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass
class Progress:
    """A snapshot of a running study, for progress displays."""

    study: StudyRow
    counts: dict[str, int]
    stage_counts: dict[str, int]
    elapsed: float
    workers_alive: int
    extra: dict[str, Any] = field(default_factory=dict)


def _worker_id(index: int) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:local{index}"


# Filled by the parent before forking; children inherit it copy-on-write.
_DATA_CACHE: dict[str, Any] = {}


# A local worker told to stop (its parent died, or SIGTERM) releases its trial at the end of the
# current epoch; one whose epoch outlasts this exits anyway, and its trial's lease expires.
STOP_GRACE_SECONDS = 30.0


def _die_with_parent(parent: int) -> threading.Event:
    """Make this worker stop when its parent dies (SIGKILL included) or when it gets SIGTERM.

    Linux sends the chosen signal when the parent exits (``PR_SET_PDEATHSIG``); no orphan goes on
    claiming trials and finishing a study in the background.

    Returns:
        An event set when the worker must stop.
    """
    dying = threading.Event()

    def on_term(_signum: int, _frame: Any) -> None:
        dying.set()
        # A daemon timer fires while a long epoch holds the main thread, and never delays an exit.
        timer = threading.Timer(STOP_GRACE_SECONDS, os._exit, args=(1,))
        timer.daemon = True
        timer.start()

    signal.signal(signal.SIGTERM, on_term)
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the request above took effect
        on_term(signal.SIGTERM, None)
    return dying


def _worker_main(db_url: str, study_id: int, index: int, workers: int, stop: Any, parent: int) -> None:
    """A local worker: claim, train, record, until the study is over, the parent says stop, or the
    parent is gone."""
    # Ctrl-C reaches every process of the terminal's group; the parent handles it and tells the
    # workers through `stop`, so that they release their trial instead of dying mid-write.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    dying = _die_with_parent(parent)

    def should_stop() -> bool:
        return stop.is_set() or dying.is_set()

    from threadpoolctl import threadpool_limits

    from ._advance import advance_study
    from ._studies import study_spec
    from ._trial import run_trial

    threadpool_limits(1)  # a guard: the parent already set one BLAS thread before NumPy loaded
    storage = Storage(db_url)
    worker = _worker_id(index)
    spec = study_spec(storage.get_study_by_id(study_id))
    max_attempts = spec.limits.max_attempts
    idle_since: float | None = None
    while not should_stop():
        trial = storage.claim_next(study_id, worker, lease_seconds=60.0)
        if trial is None:
            study = storage.get_study_by_id(study_id)
            if study.state != StudyState.RUNNING:
                return
            now = time.monotonic()
            idle_since = idle_since or now
            if now - idle_since > 1.0:
                # Nothing to claim for a while: expired leases back to the queue, and make sure the
                # study moves on even if the process that should have advanced it died.
                storage.requeue_expired(max_attempts=max_attempts)
                advance_study(storage, study_id)
                idle_since = now
            time.sleep(POLL_SECONDS)
            continue
        idle_since = None
        run_trial(storage, trial, worker, data_cache=_DATA_CACHE, should_stop=should_stop)


def run_local(
    storage: Storage,
    study: StudyRow,
    *,
    workers: int | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    refresh: float = 0.5,
) -> StudyRow:
    """Run a study to its end in ``workers`` local processes.

    Args:
        storage: The study's database.
        study: The study (RUNNING).
        workers: Worker processes; default one per core.
        on_progress: Called with a snapshot every ``refresh`` seconds (and once at the end).
        refresh: Seconds between snapshots.

    Returns:
        The study as it ended (COMPLETE, FAILED or CANCELLED).

    Raises:
        LocalRunInterruptedError: on Ctrl-C, after the workers released their trials.
    """
    from ._advance import advance_study
    from ._studies import study_spec
    from ._training import load_data

    spec = study_spec(study)
    # Load the split once here; the forked workers share it.
    dtype = spec.training.dtype
    if spec.synthetic is None:  # synthetic trials load no data
        _DATA_CACHE[spec.dataset.model_dump_json() + dtype] = load_data(spec.dataset, dtype)
    _release_dead_local_claims(storage, study.id, spec.limits.max_attempts)
    advance_study(storage, study.id)
    pool = _Pool(storage, study, workers or default_workers(), spec.limits.max_attempts)
    # SIGTERM (a service manager, `kill`) stops the run as Ctrl-C does: the workers release their
    # trials and the study stays resumable. SIGKILL cannot be caught: the workers notice the parent
    # is gone (see _die_with_parent).
    runner = local_runner()
    storage.set_runner(study.id, runner)
    main = threading.current_thread() is threading.main_thread()  # only it may set handlers
    previous = signal.signal(signal.SIGTERM, _interrupt) if main else None
    try:
        pool.start_all()
        return pool.supervise(on_progress, refresh)
    except KeyboardInterrupt:
        pool.stop(grace=30.0)
        message = f"interrupted; `hpo resume {study.name}` continues the study"
        storage.interrupt_study(study.id, message)
        raise LocalRunInterruptedError(message) from None
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
        pool.stop(grace=10.0)
        storage.set_runner(study.id, None, was=runner)


class _Pool:
    """The worker processes of one local run: started, replaced when one dies, stopped."""

    def __init__(self, storage: Storage, study: StudyRow, n: int, max_attempts: int) -> None:
        self.storage, self.study, self.n, self.cap = storage, study, n, max_attempts
        self.ctx = mp.get_context("fork")
        self.stop_event = self.ctx.Event()
        self.procs: dict[int, mp.process.BaseProcess] = {}
        self.restarts = 0

    def start(self, index: int) -> None:
        p = self.ctx.Process(
            target=_worker_main,
            args=(self.storage.url, self.study.id, index, self.n, self.stop_event, os.getpid()),
            name=f"hpo-local-{index}",
        )
        p.start()
        self.procs[index] = p

    def start_all(self) -> None:
        self.storage.dispose()  # children open their own connections
        for i in range(self.n):
            self.start(i)

    def supervise(self, on_progress: Callable[[Progress], None] | None, refresh: float) -> StudyRow:
        """Watch the study until it ends and every worker left; replace workers that die."""
        t0 = time.perf_counter()
        while True:
            current = self.storage.get_study_by_id(self.study.id)
            alive = sum(p.is_alive() for p in self.procs.values())
            if on_progress is not None:
                on_progress(_snapshot(self.storage, current, t0, alive))
            if current.state != StudyState.RUNNING and alive == 0:
                return current
            if current.state == StudyState.RUNNING:
                self._replace_dead()
            # Sleep until the next snapshot, or until a worker exits (the study ended, or a worker
            # died): workers leave as soon as the study is over, so the run ends without delay.
            sentinels = [p.sentinel for p in self.procs.values() if p.is_alive()]
            mp.connection.wait(sentinels, timeout=refresh)

    def _replace_dead(self) -> None:
        for index, p in list(self.procs.items()):
            if p.is_alive():
                continue
            # A worker died (OOM, a crash in native code): its claims go back to the queue now
            # rather than when their leases expire, and a new worker replaces it.
            _release_dead_local_claims(self.storage, self.study.id, self.cap)
            self.restarts += 1
            if self.restarts > 10 * self.n:
                self.storage.fail_study(self.study.id, "local workers keep dying; see the trials' reasons")
                return
            self.start(index)

    def stop(self, grace: float) -> None:
        """Tell the workers to stop (each releases its trial), wait up to ``grace`` seconds, then
        terminate the ones still running."""
        self.stop_event.set()
        deadline = time.monotonic() + grace
        for p in self.procs.values():
            p.join(timeout=max(0.0, deadline - time.monotonic()))
        for p in self.procs.values():
            if p.is_alive():
                p.terminate()
                p.join(5)


def local_runner() -> str:
    """How a local run names its process in ``hpo_studies.runner``: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def runner_gone(runner: str | None) -> bool:
    """Whether a study's recorded local runner is a process of this host that no longer exists
    (killed outright: SIGKILL, OOM, a power cut). A runner on another host cannot be told."""
    host, _, pid = (runner or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def shown_state(study: StudyRow) -> str:
    """The study's state as a user should read it: a local study whose run was killed outright
    (its recorded runner is gone from this host) is ``INTERRUPTED``, not ``RUNNING``."""
    if study.state == StudyState.RUNNING and study.queue is None and runner_gone(study.runner):
        return StudyState.INTERRUPTED
    return str(study.state)


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def _snapshot(storage: Storage, study: StudyRow, t0: float, alive: int) -> Progress:
    return Progress(
        study=study,
        counts=storage.counts(study.id),
        stage_counts=storage.counts(study.id, stage=study.current_stage),
        elapsed=time.perf_counter() - t0,
        workers_alive=alive,
    )


def _release_dead_local_claims(storage: Storage, study_id: int, max_attempts: int) -> None:
    """Put back trials held by local workers of this host whose process no longer exists.

    A dead worker counts as a lost attempt: a trial that kills its worker every time stops at
    the attempt cap (recorded as failed) instead of killing workers forever.
    """
    host = socket.gethostname()
    for trial in storage.trials(study_id, states=(TrialState.RUNNING,)):
        parts = (trial.worker or "").split(":")
        if len(parts) == 3 and parts[0] == host and parts[2].startswith("local"):
            try:
                os.kill(int(parts[1]), 0)
            except ProcessLookupError:
                storage.release(trial.id, trial.worker or "", worker_lost=True, max_attempts=max_attempts)
            except (PermissionError, ValueError):
                continue
