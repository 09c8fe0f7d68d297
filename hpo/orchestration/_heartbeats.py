"""Leases renewed while a trial trains, from one thread per process."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from ..storage import Storage, StorageError, TrialRow

__all__ = ["heartbeats"]

log = logging.getLogger("hpo.orchestration")


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
        except StorageError as exc:  # a blip in the database must not kill the trial; the next
            log.warning("heartbeat of trial %s failed: %s", claim.trial_id, exc)  # beat retries
        except Exception:
            log.warning("heartbeat of trial %s failed", claim.trial_id, exc_info=True)


heartbeats = _Heartbeats()
"""This process's heartbeat thread (started on first use, again in a forked child)."""
