"""The study lifecycle of :class:`~hpo.storage.Storage`: create, record the test result, stop,
resume and delete (moving through stages is :mod:`._stages`').

Cancelling (or failing) a study stops it without losing work: its ``PENDING`` trials stay
``PENDING``, its ``RUNNING`` trials go back to ``PENDING`` (the aborted claim is not counted as an
attempt, their workers' heartbeats answer ``False`` and their late ``finish`` changes nothing), and
:meth:`Lifecycle.resume_study` sets it ``RUNNING`` again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from . import _optuna_mirror as optuna_mirror
from ._base import DEFAULT_MAX_ATTEMPTS, RollbackError, S, T
from ._checkpoints import Checkpoints, study_artifact_ids
from ._clock import db_now
from ._engine import advisory_lock
from ._errors import StudyExistsError, StudyStateError
from ._models import StudyState
from ._rows import StageDraft, StudyRow, dumps, row_from
from ._stages import Stages, check_direction, check_draft, insert_stage
from ._trial_states import TrialStates
from ._view import View, name_taken, spec_metric

__all__ = ["Lifecycle"]


class Lifecycle(Stages, TrialStates, Checkpoints, View):
    """Studies from creation to deletion: their state, test result and runner; stops and resumes."""

    # -- creation ----------------------------------------------------------------------------

    # Long for its contract: one transaction writes the study, stage 0, its trials and the Optuna study.
    def create_study(
        self,
        name: str,
        spec_json: str,
        spec_hash: str,
        direction: str,
        first_stage: StageDraft,
        *,
        queue: str | None = None,
        metric_name: str | None = None,
        artifacts: str | None = None,
    ) -> tuple[StudyRow, bool]:
        """Create a study with its first stage and that stage's ``PENDING`` trials, in one transaction.

        Submitting the same study again (same name, same spec hash) returns the existing study.
        The Optuna study of the same name is created in the same transaction.

        Args:
            name: Unique study name.
            spec_json: JSON text of the validated spec.
            spec_hash: sha256 of the canonical spec JSON.
            direction: ``"minimize"`` or ``"maximize"``.
            first_stage: Stage 0 with trials numbered 0, 1, ...
            queue: The message queue its trials go to (None: local processes run it).
            metric_name: The objective's name in the Optuna study (``val_acc``, ``val_loss``);
                None: the spec's ``objective.metric``, if ``spec_json`` names one.
            artifacts: URL of the artifact store its trials' checkpoints and models go to (see
                :func:`hpo.artifacts.resolve_store_url`; the caller has checked it). A study that
                exists already keeps its own.

        Returns:
            ``(study, created)``; ``created`` is ``False`` when the study already existed.

        Raises:
            StudyExistsError: A study of that name has a different spec hash, or an Optuna study of
                that name exists that is not linked to an hpo study (whatever its attributes say:
                ``optuna.copy_study`` copies them). Nothing is written.
            ValueError: Invalid direction or stage draft. Nothing is written.
        """
        check_direction(direction)
        check_draft(first_stage, 0, 0)
        existing = self.find_study(name)
        if existing is not None:
            return self._same_study(existing, spec_hash), False
        study = {
            "name": name,
            "spec": spec_json,
            "spec_hash": spec_hash,
            "direction": direction,
            "queue": queue,
            "artifacts": artifacts,
        }
        try:
            study_id = self._insert_study(study, first_stage, metric_name or spec_metric(spec_json))
        except (RollbackError, sa.exc.IntegrityError):
            # A concurrent creator of the same name won (ours or Optuna's unique name).
            existing = self.find_study(name)
            if existing is None:
                if optuna_mirror.find_optuna_study(self.url, name) is not None:
                    raise name_taken(name) from None
                raise
            return self._same_study(existing, spec_hash), False
        return self.get_study_by_id(study_id), True

    def _insert_study(self, study: dict[str, Any], first_stage: StageDraft, metric: str | None) -> int:
        """Insert the study, its Optuna study and its first stage in one transaction; its id.

        Raises:
            RollbackError: The name is taken (by a study created since the caller looked, or by an
                Optuna study); nothing is written.
        """
        name = study["name"]
        now = db_now()
        with self._write() as conn:
            if conn.execute(sa.select(S.c.id).where(S.c.name == name)).first() is not None:
                raise RollbackError  # created since we looked (SQLite serialises writers)
            if optuna_mirror.optuna_study_named(conn, name) is not None:
                # A user's, or (PostgreSQL, READ COMMITTED) that of a creator of this very study
                # who committed since our look-up: told apart after the rollback.
                raise RollbackError
            values = {**study, "state": StudyState.RUNNING.value, "current_stage": 0}
            study_id: int = conn.execute(
                sa.insert(S).values(created_at=now, updated_at=now, **values).returning(S.c.id)
            ).scalar_one()
            # Our study and its Optuna study commit together: none exists without the other.
            self._link_optuna_study(conn, study_id, name, study["direction"], metric)
            insert_stage(conn, study_id, first_stage, now)
        return study_id

    def _same_study(self, existing: StudyRow, spec_hash: str) -> StudyRow:
        if existing.spec_hash != spec_hash:
            raise StudyExistsError(
                f"study {existing.name!r} already exists with a different spec; "
                "choose another name or delete it first"
            )
        return self._ensure_optuna_study(existing)

    # -- results ---------------------------------------------------------------------------

    def set_test_result(self, study_id: int, test_result: Any) -> bool:
        """Record the study's test result (JSON value), e.g. once the best trial was evaluated.

        Returns:
            Whether the study exists.
        """
        with self._write() as conn:
            result = conn.execute(
                sa.update(S)
                .where(S.c.id == study_id)
                .values(test_result=dumps(test_result), updated_at=db_now())
            )
            return result.rowcount == 1

    # -- stops and resumes -------------------------------------------------------------------

    def _stop(
        self,
        where: Any,
        state: StudyState,
        reason: str | None,
        from_states: Sequence[StudyState] = (StudyState.RUNNING,),
    ) -> StudyRow | None:
        """Move the study matching ``where`` from ``from_states`` to ``state``, requeueing its
        ``RUNNING`` trials without counting the attempt; the study, or None if it was not there."""
        with self._write() as conn:
            m = (
                conn.execute(
                    sa.update(S)
                    .where(where, S.c.state.in_([s.value for s in from_states]))
                    .values(state=state.value, reason=reason, runner=None, updated_at=db_now())
                    .returning(*S.c)
                )
                .mappings()
                .first()
            )
            if m is None:
                return None
            self._requeue(conn, [T.c.study_id == m["id"]], None, count_attempt=False)
            return row_from(StudyRow, m)

    def cancel_study(self, name: str, reason: str = "cancelled") -> StudyRow:
        """Stop a running (or interrupted) study, keeping everything needed to resume it.

        The study becomes ``CANCELLED``; ``PENDING`` trials stay ``PENDING``; ``RUNNING`` trials go back
        to ``PENDING`` without counting the aborted attempt. Their workers' heartbeats return
        ``False`` and their late results are ignored.

        Returns:
            The study after the call.

        Raises:
            StudyNotFoundError: No such study.
            StudyStateError: The study is complete, failed or cancelled already (nothing changes).
        """
        study = self.get_study(name)
        stopped = self._stop(
            S.c.id == study.id,
            StudyState.CANCELLED,
            reason,
            from_states=(StudyState.RUNNING, StudyState.INTERRUPTED),
        )
        if stopped is None:
            now = self.get_study(name)
            raise StudyStateError(
                f"study {name!r} is {now.state.lower()} already; there is nothing to cancel"
            )
        return stopped

    def interrupt_study(self, study_id: int, reason: str) -> bool:
        """Mark a running study ``INTERRUPTED`` (its local run was stopped), like a cancel that
        ``hpo resume`` and a resubmission undo.

        Returns:
            Whether this call interrupted the study (``False``: it was not running).
        """
        return self._stop(S.c.id == study_id, StudyState.INTERRUPTED, reason) is not None

    def fail_study(self, study_id: int, reason: str) -> bool:
        """Mark a running study ``FAILED`` (e.g. too many failed trials), stopping it like a cancel.

        A compare-and-set: only a ``RUNNING`` study is failed, so the first reason is kept.

        Returns:
            Whether this call failed the study (``False``: it was not running, or does not exist).
        """
        return self._stop(S.c.id == study_id, StudyState.FAILED, reason) is not None

    def set_runner(self, study_id: int, runner: str | None, *, was: str | None = None) -> None:
        """Record the process running a local study (``host:pid``), or that none does (None).

        Args:
            study_id: The study.
            runner: The process, or None.
            was: Change it only if this is the runner recorded (a process that ends clears only
                its own record, not that of a process that took the study over).
        """
        where = [S.c.id == study_id]
        if was is not None:
            where.append(S.c.runner == was)
        with self._write() as conn:
            conn.execute(sa.update(S).where(*where).values(runner=runner))

    def resume_study(
        self, name: str, *, requeue_running: bool = False, max_attempts: int = DEFAULT_MAX_ATTEMPTS
    ) -> StudyRow:
        """Set a ``CANCELLED``, ``FAILED`` or ``INTERRUPTED`` study ``RUNNING`` again; its ``PENDING``
        trials run next.

        After resuming, call :meth:`advance` for the current stage (a stage whose last trial
        finished while the study was stopped is advanced then).

        Args:
            name: The study.
            requeue_running: Also put its ``RUNNING`` trials back to ``PENDING`` now, without waiting
                for their leases (the caller knows their workers are gone, e.g. a local run that was
                killed); this counts as a lost attempt, like a lease expiry.
            max_attempts: Attempt cap for ``requeue_running``.

        Returns:
            The study after the call.

        Raises:
            StudyNotFoundError: No such study.
            StudyStateError: The study is ``COMPLETE``.
        """
        study = self.get_study(name)
        if study.state == StudyState.COMPLETE:
            raise StudyStateError(f"study {name!r} is complete; there is nothing to resume")
        stopped = [StudyState.CANCELLED.value, StudyState.FAILED.value, StudyState.INTERRUPTED.value]
        with self._write() as conn:
            conn.execute(
                sa.update(S)
                .where(S.c.id == study.id, S.c.state.in_(stopped))
                .values(state=StudyState.RUNNING.value, reason=None, updated_at=db_now())
            )
            if requeue_running:
                self._requeue(conn, [T.c.study_id == study.id], max_attempts)
        return self.get_study(name)

    def delete_study(self, name: str) -> list[str]:
        """Delete a study: its rows (stages and trials cascade), then its Optuna study.

        The study is stopped first, so that in-flight claims give their trials up (on PostgreSQL
        they would otherwise deadlock with the cascade) and late results are ignored. Then its
        rows and its Optuna study go in one transaction, under the mirror lock (after any mirror in
        progress; a later mirror finds no rows). Only the Optuna study our tables link to is
        deleted: one the user replaced or copied under another name stays.

        Returns:
            The ids of the artifacts its trials named (models and checkpoints), read in the
            transaction that deleted them: the caller removes them from the study's store
            (:attr:`StudyRow.artifacts`). A worker that stores a checkpoint later finds its claim
            gone, and removes it itself.

        Raises:
            StudyNotFoundError: No such study.
        """
        study = self.get_study(name)
        self._stop(S.c.id == study.id, StudyState.CANCELLED, "deleted")
        with self._write() as conn:
            advisory_lock(conn, study.id)  # after any mirror of this study in progress
            if optuna_mirror.is_linked(conn, study.optuna_study_id, study.name, study.optuna_link):
                assert study.optuna_study_id is not None
                optuna_mirror.delete_optuna_study(conn, study.optuna_study_id)
            artifacts = study_artifact_ids(conn, study.id)
            conn.execute(sa.delete(S).where(S.c.id == study.id))
        return artifacts
