"""The trial state machine of :class:`~hpo.storage.Storage` (``docs/architecture.md``)::

    PENDING --claim (attempts += 1, lease)--> RUNNING --finish--> COMPLETE | FAIL | PRUNED
       ^                                         |
       +----- lease expired, attempts < cap -----+   (attempts >= cap: FAIL "worker lost N times")

Every transition is a compare-and-set: a conditional ``UPDATE`` whose returned rows say whether it
happened (SQLite drops ``FOR UPDATE``, so no transition relies on it). On PostgreSQL
``claim_next`` picks with ``FOR UPDATE SKIP LOCKED``. Leases are the database's clock, computed in
the statement (:func:`hpo.storage._clock.db_now`): hosts whose clocks disagree judge them alike.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ._base import DEFAULT_MAX_ATTEMPTS, S, T
from ._clock import db_now
from ._models import StudyState, TrialState
from ._queries import Queries
from ._rows import StudyProgress, StudyRow, TrialOutcome, TrialRow, dumps, intermediate_to_json, row_from

__all__ = ["TrialStates", "held_claim"]


def _running_study(study_id: Any, *, share_lock: bool, queues: Any = None) -> Any:
    """``EXISTS``: the study is ``RUNNING`` (and bound to one of ``queues``, when given); with
    ``share_lock`` (PostgreSQL) its row is share-locked until commit.

    With the lock, a concurrent cancel either waits for the claim that holds it (and then
    requeues the claimed trial) or made the claim wait, which then sees the study cancelled and
    claims nothing. SQLite's ``BEGIN IMMEDIATE`` already serialises both.
    """
    locked = S.alias("locked_study")  # never correlated with an hpo_studies of the outer statement
    running = sa.select(locked.c.id).where(
        locked.c.id == study_id, locked.c.state == StudyState.RUNNING.value
    )
    if queues is not None:
        running = running.where(locked.c.queue.in_(queues))
    if share_lock:
        running = running.with_for_update(read=True)
    return running.exists()


@functools.cache
def _claim_statement(postgresql: bool, by_queue: bool) -> Any:
    """:meth:`TrialStates.claim_with_study`'s statement, built once.

    Binds ``trial_id``, ``claim_worker``, ``claim_lease`` (seconds; the lease runs from the
    database's clock) and, ``by_queue``, ``claim_queues`` (the study must be bound to one of
    them). Building it per call cost ~0.3 ms, a tenth of a trial's bookkeeping through the queue.
    """
    queues: Any = sa.bindparam("claim_queues", expanding=True) if by_queue else None
    running = _running_study(T.c.study_id, share_lock=postgresql, queues=queues)
    claim = (
        sa.update(T)
        .where(T.c.id == sa.bindparam("trial_id"), T.c.state == TrialState.PENDING.value, running)
        .values(
            state=TrialState.RUNNING.value,
            attempts=T.c.attempts + 1,
            worker=sa.bindparam("claim_worker", type_=T.c.worker.type),
            started_at=db_now(),
            lease_expires_at=db_now(sa.bindparam("claim_lease")),
        )
    )
    if not postgresql:  # SQLite's RETURNING cannot name another table: the study is read after
        return claim.returning(*T.c)
    # PostgreSQL: UPDATE ... FROM hpo_studies returns the study's columns too.
    study = [c.label(f"study__{c.name}") for c in S.c]
    return claim.where(S.c.id == T.c.study_id).returning(*T.c, *study)


@functools.cache
def _finish_statement(with_attempt: bool) -> Any:
    """:meth:`TrialStates.finish`'s statement, built once.

    Binds ``trial_id``, ``held_worker`` (and ``held_attempt``) and ``final_<column>`` for every
    field of :class:`TrialOutcome` (its column of the same name; ``None`` keeps what the last
    heartbeat stored where the field says so).
    """
    held = [
        T.c.id == sa.bindparam("trial_id"),
        T.c.state == TrialState.RUNNING.value,
        T.c.worker == sa.bindparam("held_worker", type_=T.c.worker.type),
    ]
    if with_attempt:
        held.append(T.c.attempts == sa.bindparam("held_attempt", type_=T.c.attempts.type))
    final: dict[str, Any] = {}
    for f in dataclasses.fields(TrialOutcome):
        column = T.c[f.name]
        bound = sa.bindparam(f"final_{f.name}", type_=column.type)
        final[f.name] = sa.func.coalesce(bound, column) if f.name in TrialOutcome.kept_when_none() else bound
    # The final model supersedes the rolling checkpoint: the worker removes that artifact after.
    ended = {"checkpoint": None, "checkpoint_epoch": None, "finished_at": db_now(), "lease_expires_at": None}
    return sa.update(T).where(*held).values(**final, **ended).returning(T.c.study_id)


def held_claim(trial_id: int, worker: str, attempt: int | None) -> list[Any]:
    """``WHERE``: the trial is ``RUNNING`` under this claim (this worker, and this attempt if given)."""
    cond = [T.c.id == trial_id, T.c.state == TrialState.RUNNING.value, T.c.worker == worker]
    if attempt is not None:
        cond.append(T.c.attempts == attempt)
    return cond


def _check_lease(lease_seconds: float) -> float:
    if lease_seconds <= 0:
        raise ValueError("lease_seconds must be > 0")
    return float(lease_seconds)


class TrialStates(Queries):
    """The trial transitions: claim, heartbeat, finish, release, requeue, and queue delivery."""

    # -- claims ------------------------------------------------------------------------------

    def claim_next(self, study_id: int | None, worker: str, lease_seconds: float) -> TrialRow | None:
        """Claim the oldest ``PENDING`` trial of a running study (of ``study_id``, or of any study).

        Args:
            study_id: Only this study, or ``None`` for any running study.
            worker: Name of the claiming worker (recorded; ``heartbeat``/``finish`` must match).
            lease_seconds: The claim expires unless extended by a heartbeat within this time.

        Returns:
            The claimed trial (``RUNNING``, ``attempts`` incremented), or ``None`` if none is free.
        """
        lease = _check_lease(lease_seconds)
        pick = T.alias("pick")
        sub = (
            sa.select(pick.c.id)
            .join(S, S.c.id == pick.c.study_id)
            .where(pick.c.state == TrialState.PENDING.value, S.c.state == StudyState.RUNNING.value)
            .order_by(pick.c.id)
            .limit(1)
        )
        if study_id is not None:
            sub = sub.where(pick.c.study_id == study_id)
        if not self.is_sqlite:
            sub = sub.with_for_update(skip_locked=True, of=pick)
        stmt = (
            sa.update(T)
            .where(
                T.c.id == sub.scalar_subquery(),
                T.c.state == TrialState.PENDING.value,
                _running_study(T.c.study_id, share_lock=not self.is_sqlite),
            )
            .values(
                state=TrialState.RUNNING.value,
                attempts=T.c.attempts + 1,
                worker=worker,
                started_at=db_now(),
                lease_expires_at=db_now(lease),
            )
            .returning(*T.c)
        )
        with self._write() as conn:
            m = conn.execute(stmt).mappings().first()
        return None if m is None else row_from(TrialRow, m)

    def claim_with_study(
        self, trial_id: int, worker: str, lease_seconds: float, *, queues: Sequence[str] | None = None
    ) -> tuple[TrialRow, StudyRow] | None:
        """Claim one trial if it is ``PENDING`` and its study is running (Celery tasks name the
        trial), returning the trial's study too, read by the same statement.

        Args:
            trial_id: The trial.
            worker: Name of the claiming worker.
            lease_seconds: The claim's lease.
            queues: Claim only a trial of a study bound to one of these queues (a remote worker
                passes the queues it consumes: a message naming a trial of another queue's study,
                or of a local run, claims nothing).

        Returns:
            ``(trial, study)``, or ``None`` (already claimed, finished, or the study is not running).
        """
        params: dict[str, Any] = {
            "trial_id": trial_id,
            "claim_worker": worker,
            "claim_lease": _check_lease(lease_seconds),
        }
        if queues is not None:
            params["claim_queues"] = list(queues)
        sqlite = self.is_sqlite
        with self._statements() as conn:  # PostgreSQL: one statement, its own transaction
            m = conn.execute(_claim_statement(not sqlite, queues is not None), params).mappings().first()
            if m is None:
                return None
            if sqlite:
                study = conn.execute(sa.select(S).where(S.c.id == m["study_id"])).mappings().one()
                return row_from(TrialRow, m), row_from(StudyRow, study)
        return row_from(TrialRow, m), row_from(StudyRow, m, prefix="study__")

    # -- a claim's life ----------------------------------------------------------------------

    def heartbeat(
        self,
        trial_id: int,
        worker: str,
        lease_seconds: float,
        curves: list[Any] | None = None,
        intermediate: Mapping[int, float] | None = None,
        *,
        attempt: int | None = None,
    ) -> bool:
        """Extend the lease of a running trial, and store its curves / intermediate values so far.

        Args:
            trial_id: The trial.
            worker: The worker that claimed it.
            lease_seconds: New lease, from now.
            curves: Epoch records so far (unchanged when ``None``).
            intermediate: ``{epoch: objective value}`` so far (unchanged when ``None``).
            attempt: The claim's ``attempts`` value, to tell this claim from an older one of the same
                worker name (recommended).

        Returns:
            ``False`` when the worker should stop: the trial is no longer ``RUNNING`` under this
            claim (lease taken over, finished, requeued) or its study is not running (cancelled).
        """
        values: dict[str, Any] = {"lease_expires_at": db_now(_check_lease(lease_seconds))}
        if curves is not None:
            values["curves"] = dumps(curves)
        if intermediate is not None:
            values["intermediate"] = intermediate_to_json(intermediate)
        running = sa.exists().where(S.c.id == T.c.study_id, S.c.state == StudyState.RUNNING.value)
        with self._write() as conn:
            result = conn.execute(
                sa.update(T).where(*held_claim(trial_id, worker, attempt), running).values(**values)
            )
            return result.rowcount == 1

    def finish(
        self, trial_id: int, worker: str, outcome: TrialOutcome, *, attempt: int | None = None
    ) -> StudyProgress | None:
        """Record the result of a running trial, once, and read the study's progress.

        Only ``RUNNING`` -> final under the same claim: a second delivery of the same result, or a
        late worker whose lease was taken over, changes nothing and gets ``None``. The trial is
        written to the Optuna study later, in a batch, by :meth:`mirror`.

        The update is a transaction of its own, and the progress is read once it is committed,
        in a snapshot of its own (SQLite, whose write transactions run one at a time: in the same
        transaction). Of two trials finishing together, the one whose read comes later reads
        after both commits and sees both finished, so the last trial of a stage always sees the
        stage done, and no finish waits for another's (a lock held from the update to the commit
        made those of one study queue behind each other: with 32 pool processes, most of a no-op
        trial's finish was that wait). Both may see it done; ``Storage.advance``'s
        compare-and-set lets one of them move the study on.

        A database that fails between the commit and that read raises :class:`StorageError`,
        as one that fails before it; the result is stored then, and a second call returns
        ``None`` (the reaper's pass advances the study).

        Args:
            trial_id: The trial.
            worker: The worker that claimed it.
            outcome: Its final state, value, reason, curves, intermediate values and model (the
                trial's rolling ``checkpoint`` is cleared).
            attempt: The claim's ``attempts`` value (recommended, see :meth:`heartbeat`).

        Returns:
            The study's progress once this result is recorded, or ``None`` if this call recorded
            nothing.
        """
        params: dict[str, Any] = {"trial_id": trial_id, "held_worker": worker}
        params |= {f"final_{column}": value for column, value in outcome.columns().items()}
        if attempt is not None:
            params["held_attempt"] = attempt
        with self._statements() as conn:
            row = conn.execute(_finish_statement(attempt is not None), params).first()
            if row is None:
                return None
            # PostgreSQL: committed already, and this read's snapshot is taken after that.
            return self._progress(conn, row.study_id)

    # -- claims given up ---------------------------------------------------------------------

    @staticmethod
    def _requeue(
        conn: Connection,
        where: list[Any],
        max_attempts: int | None,
        *,
        count_attempt: bool = True,
    ) -> tuple[list[int], list[int]]:
        """Move ``RUNNING`` trials matching ``where`` back to ``PENDING`` (or to ``FAIL`` at the cap).

        A trial at the cap is never requeued, even if ``where`` matches it only in the second
        statement (on SQLite, 'now' moves between statements): the reaper's next pass fails it.

        Returns:
            ``(requeued ids, failed ids)``.
        """
        running = [*where, T.c.state == TrialState.RUNNING.value]
        failed: list[int] = []
        if max_attempts is not None:
            reason = (
                sa.literal("worker lost ")
                + sa.cast(T.c.attempts, sa.String)
                + sa.literal(" times (attempt cap)")
            )
            failed = list(
                conn.execute(
                    sa.update(T)
                    .where(*running, T.c.attempts >= max_attempts)
                    .values(
                        state=TrialState.FAIL.value,
                        value=None,
                        reason=reason,
                        finished_at=db_now(),
                        lease_expires_at=None,
                    )
                    .returning(T.c.id)
                ).scalars()
            )
        values: dict[str, Any] = {
            "state": TrialState.PENDING.value,
            "worker": None,
            "lease_expires_at": None,
            "started_at": None,
            "curves": None,  # the next attempt starts over
            "intermediate": None,
        }
        if not count_attempt:
            values["attempts"] = T.c.attempts - 1
        below_cap = [] if max_attempts is None else [T.c.attempts < max_attempts]
        requeued = list(
            conn.execute(
                sa.update(T).where(*running, *below_cap).values(**values).returning(T.c.id)
            ).scalars()
        )
        return requeued, failed

    def release(
        self,
        trial_id: int,
        worker: str,
        *,
        attempt: int | None = None,
        worker_lost: bool = False,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> bool:
        """Hand a running trial back: ``RUNNING`` -> ``PENDING`` under its claim; partial results dropped.

        Args:
            trial_id: The trial.
            worker: The worker that claimed it.
            attempt: The claim's ``attempts`` value (recommended, see :meth:`heartbeat`).
            worker_lost: ``False`` (default): the run was stopped on purpose (Ctrl-C, shutdown), and the
                aborted attempt is not counted. ``True``: its worker process died (found by a
                supervisor); this counts like a lease expiry, and at ``max_attempts`` the trial goes to
                ``FAIL`` with reason ``"worker lost N times (attempt cap)"`` instead.
            max_attempts: Attempt cap when ``worker_lost``.

        Returns:
            Whether the trial was held by this claim (and is now ``PENDING``, or ``FAIL`` at the cap).
        """
        with self._write() as conn:
            requeued, failed = self._requeue(
                conn,
                held_claim(trial_id, worker, attempt),
                max_attempts if worker_lost else None,
                count_attempt=worker_lost,
            )
        return bool(requeued or failed)

    def requeue_expired(
        self,
        now: datetime | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        *,
        study_id: int | None = None,
    ) -> list[int]:
        """The reaper: ``RUNNING`` trials whose lease expired go back to ``PENDING``.

        A trial already claimed ``max_attempts`` times goes to ``FAIL`` instead, with reason
        ``"worker lost N times (attempt cap)"``. A failed trial may finish its stage: call
        :meth:`advance` for the studies concerned.

        Args:
            now: The time to compare leases with (default: the database's current time; tests
                pass a later time instead of waiting).
            max_attempts: Attempt cap.
            study_id: Only this study's trials (default: every study's).

        Returns:
            Ids of the trials moved (requeued and failed).
        """
        where = [T.c.lease_expires_at < (db_now() if now is None else now)]
        if study_id is not None:
            where.append(T.c.study_id == study_id)
        with self._write() as conn:
            requeued, failed = self._requeue(conn, where, max_attempts)
        return sorted(requeued + failed)

    # -- delivery through a message queue ----------------------------------------------------

    def mark_enqueued(self, trial_ids: Iterable[int], *, enqueued: bool = True) -> int:
        """Record that these PENDING trials are being put on a message queue (now), or, with
        ``enqueued=False``, that they were not after all (the send failed): never enqueued.

        Returns:
            How many were PENDING (and so marked).
        """
        ids = [int(i) for i in trial_ids]
        if not ids:
            return 0
        with self._write() as conn:
            result = conn.execute(
                sa.update(T)
                .where(T.c.id.in_(ids), T.c.state == TrialState.PENDING.value)
                .values(enqueued_at=db_now() if enqueued else None)
            )
        return int(result.rowcount or 0)

    def undelivered(self, older_than: float, *, study_id: int | None = None) -> list[TrialRow]:
        """PENDING trials of running studies never enqueued, or enqueued more than ``older_than``
        seconds ago: their message may be lost (a broker restart) and is owed again.
        """
        cutoff = db_now(-float(older_than))
        running = sa.select(S.c.id).where(S.c.state == StudyState.RUNNING.value)
        query = (
            sa.select(T)
            .where(T.c.state == TrialState.PENDING.value, T.c.study_id.in_(running))
            .where(sa.or_(T.c.enqueued_at.is_(None), T.c.enqueued_at < cutoff))
            .order_by(T.c.study_id, T.c.number)
        )
        if study_id is not None:
            query = query.where(T.c.study_id == study_id)
        with self._read() as conn:
            return [row_from(TrialRow, m) for m in conn.execute(query).mappings()]
