"""Stages of :class:`~hpo.storage.Storage`: a study's trials are inserted a stage at a time, and
the study moves past a stage once all its trials finished.

Invariants (``docs/architecture.md``): a study's trial numbers are contiguous from 0 across stages
(I2), and a study moves past a stage only when all ``n_trials`` of its trials exist and none is
``PENDING`` or ``RUNNING`` (I1). Both are checked by the writes themselves, in their transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from . import _optuna_mirror as optuna_mirror
from ._base import UNFINISHED, G, RollbackError, S, StorageBase, T
from ._clock import db_now
from ._errors import StorageError
from ._models import StageState, StudyState, TrialState
from ._rows import NewTrial, StageDraft, dumps

__all__ = ["NewTrials", "Stages", "check_direction", "check_draft", "insert_stage"]

NewTrials = Sequence[NewTrial]
"""The trials to insert ``PENDING``."""


def _check_trials(trials: NewTrials, first: int | None, what: str) -> None:
    numbers = [int(t.number) for t in trials]
    start = numbers[0] if first is None else first
    if numbers != list(range(start, start + len(numbers))):
        raise ValueError(f"{what}: trial numbers must be contiguous from {start}, got {numbers}")


def check_draft(draft: StageDraft, index: int, first_number: int | None) -> None:
    """Validate a stage draft before anything is written (numbers checked again in the transaction).

    A stage may start with fewer trials than ``n_trials`` (sequential samplers add the rest with
    :meth:`Stages.add_trials`), never with none and never with more.
    """
    if draft.index != index:
        raise ValueError(f"stage draft has index {draft.index}, expected {index}")
    if not 1 <= len(draft.trials) <= draft.n_trials:
        raise ValueError(f"stage {index}: n_trials={draft.n_trials} but {len(draft.trials)} trials given")
    if draft.epochs < 0:
        raise ValueError(f"stage {index}: epochs must be >= 0")
    _check_trials(draft.trials, first_number, f"stage {index}")
    optuna_mirror.decode_space(draft.space_json)  # raises StorageError when it is not a space


def check_direction(direction: str) -> None:
    """Raise ValueError unless ``direction`` is ``"minimize"`` or ``"maximize"``."""
    if direction not in ("minimize", "maximize"):
        raise ValueError(f"direction must be 'minimize' or 'maximize', not {direction!r}")


def _insert_trials(conn: Connection, study_id: int, stage: int, trials: NewTrials, now: db_now) -> None:
    conn.execute(
        sa.insert(T).values(created_at=now),
        [
            {
                "study_id": study_id,
                "number": int(number),
                "stage": stage,
                "params": dumps(dict(params)),
                "seed": int(seed),
                "state": TrialState.PENDING.value,
                "attempts": 0,
                "parent_id": None if parent_id is None else int(parent_id),
            }
            for number, params, seed, parent_id in trials
        ],
    )


def insert_stage(conn: Connection, study_id: int, draft: StageDraft, now: db_now) -> None:
    conn.execute(
        sa.insert(G).values(
            study_id=study_id,
            index=draft.index,
            n_trials=draft.n_trials,
            epochs=draft.epochs,
            space=draft.space_json,
            state=StageState.RUNNING.value,
            created_at=now,
        )
    )
    _insert_trials(conn, study_id, draft.index, draft.trials, now)


def _stage_done(study_id: int, stage: int) -> list[Any]:
    """``WHERE`` on the study: all ``n_trials`` trials of ``stage`` created, none ``PENDING`` or
    ``RUNNING`` (invariant I1)."""
    unfinished = (
        sa.select(T.c.id)
        .where(T.c.study_id == study_id, T.c.stage == stage, T.c.state.in_(UNFINISHED))
        .exists()
    )
    created = sa.select(sa.func.count()).where(T.c.study_id == study_id, T.c.stage == stage).scalar_subquery()
    planned = sa.select(G.c.n_trials).where(G.c.study_id == study_id, G.c.index == stage).scalar_subquery()
    return [~unfinished, created == planned]


class Stages(StorageBase):
    """A study's progression through its stages, and the trials added to the current one."""

    def advance(
        self,
        study_id: int,
        expected_stage: int,
        next_stage: StageDraft | None,
        *,
        complete_reason: str | None = None,
        test_result: Any = None,
    ) -> bool:
        """Move a study past a finished stage; exactly one of several concurrent callers wins.

        A compare-and-set on ``hpo_studies.current_stage == expected_stage`` (study ``RUNNING``, all
        ``n_trials`` trials of that stage created and none ``PENDING`` or ``RUNNING``: invariant I1), in
        one transaction with the rest: the stage is marked ``COMPLETE``, then either ``next_stage``
        and its ``PENDING`` trials are inserted, or (``next_stage`` is ``None``) the study is marked
        ``COMPLETE`` with ``test_result``.

        Args:
            study_id: The study.
            expected_stage: The stage the caller saw finish.
            next_stage: The next stage (index ``expected_stage + 1``, numbers continuing the study's),
                or ``None`` to complete the study.
            complete_reason: Recorded as the study's reason on completion (e.g. early stop).
            test_result: JSON value recorded on completion.

        Returns:
            Whether this call advanced the study (``False``: not finished yet, or someone else did).

        Raises:
            ValueError: The draft is malformed.
            StorageError: The draft's numbers do not continue the study's numbering.
        """
        # Long mostly for its contract above; the code is one compare-and-set and what it decides,
        # kept in one transaction.
        if next_stage is not None:
            check_draft(next_stage, expected_stage + 1, None)
        now = db_now()
        if next_stage is None:
            test = None if test_result is None else dumps(test_result)
            values: dict[str, Any] = {"state": StudyState.COMPLETE.value, "test_result": test}
            values["reason"] = complete_reason
        else:
            values = {"current_stage": expected_stage + 1}
        with self._write() as conn:
            won = conn.execute(
                sa.update(S)
                .where(
                    S.c.id == study_id,
                    S.c.current_stage == expected_stage,
                    S.c.state == StudyState.RUNNING.value,
                    *_stage_done(study_id, expected_stage),
                )
                .values(updated_at=now, **values)
                .returning(S.c.id)
            ).first()
            if won is None:
                return False
            conn.execute(
                sa.update(G)
                .where(G.c.study_id == study_id, G.c.index == expected_stage)
                .values(state=StageState.COMPLETE.value, finished_at=now)
            )
            if next_stage is not None:
                self._next_stage(conn, study_id, next_stage, now)
        return True

    @staticmethod
    def _next_stage(conn: Connection, study_id: int, draft: StageDraft, now: db_now) -> None:
        """Insert the next stage, whose numbers must continue the study's (in advance's transaction)."""
        count, top = conn.execute(
            sa.select(sa.func.count(), sa.func.max(T.c.number)).where(T.c.study_id == study_id)
        ).one()
        first = int(draft.trials[0].number)
        if first != count or (top is not None and top != count - 1):
            raise StorageError(
                f"stage {draft.index} of study {study_id} must number its trials from {count}, not {first}"
            )
        insert_stage(conn, study_id, draft, now)

    def add_trials(self, study_id: int, stage: int, trials: NewTrials) -> bool:
        """Add ``PENDING`` trials to the current stage (sequential samplers propose a few at a time).

        A compare-and-set: the study is ``RUNNING`` in stage ``stage`` and the numbers continue the
        study's numbering (I2). A concurrent caller that already added these numbers makes this one
        return ``False``; the stage never gets more than its ``n_trials``.

        Args:
            study_id: The study.
            stage: Its current stage.
            trials: The trials, numbered from the study's trial count.

        Returns:
            Whether the trials were added.

        Raises:
            ValueError: Malformed or empty ``trials``.
            StorageError: The numbers leave a gap, or the stage would exceed its ``n_trials``.
        """
        trials = list(trials)
        if not trials:
            raise ValueError("add_trials needs at least one trial")
        _check_trials(trials, None, f"stage {stage}")
        now = db_now()
        try:
            with self._write() as conn:
                # Lock the study row (PostgreSQL) so add_trials and advance of a study serialise.
                locked = conn.execute(
                    sa.update(S)
                    .where(
                        S.c.id == study_id, S.c.state == StudyState.RUNNING.value, S.c.current_stage == stage
                    )
                    .values(updated_at=now)
                    .returning(S.c.id)
                ).first()
                if locked is None:
                    raise RollbackError
                self._check_room(conn, study_id, stage, trials)
                _insert_trials(conn, study_id, stage, trials, now)
        except (RollbackError, sa.exc.IntegrityError):
            return False
        return True

    @staticmethod
    def _check_room(conn: Connection, study_id: int, stage: int, trials: NewTrials) -> None:
        """Check, in add_trials' transaction, that ``trials`` continue the numbering and fit the stage.

        Raises:
            RollbackError: Another caller added these numbers first.
            StorageError: The numbers leave a gap, or the stage would exceed its ``n_trials``.
        """
        n_trials = conn.execute(
            sa.select(G.c.n_trials).where(G.c.study_id == study_id, G.c.index == stage)
        ).scalar_one()
        total, in_stage = conn.execute(
            sa.select(sa.func.count(), sa.func.count().filter(T.c.stage == stage)).where(
                T.c.study_id == study_id
            )
        ).one()
        first = int(trials[0].number)
        if first < total:
            raise RollbackError  # another caller added these numbers first
        if first > total:
            raise StorageError(f"study {study_id}: new trials must be numbered from {total}, not {first}")
        if in_stage + len(trials) > n_trials:
            raise StorageError(
                f"stage {stage} of study {study_id} has {in_stage} of {n_trials} trials; "
                f"cannot add {len(trials)}"
            )
