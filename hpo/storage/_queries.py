"""Reads of :class:`~hpo.storage.Storage`: studies, stages, trials, the counts they move on, and
the compute their trials recorded.

Every read runs in a read-only transaction (deferred on SQLite: it never waits for writers) and
returns plain frozen rows (:mod:`._rows`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ._base import UNFINISHED, G, S, StorageBase, T
from ._errors import StudyNotFoundError
from ._models import TrialState
from ._rows import Compute, StageRow, StudyCompute, StudyProgress, StudyRow, TrialRow, loads, row_from

__all__ = ["STREAM_BATCH", "Queries"]

STREAM_BATCH = 500
"""Rows a streamed read holds at once (:meth:`Queries.iter_trials`): at 50-epoch curves, ~5 MB."""


@functools.cache
def _progress_query() -> sa.Select[Any]:
    """:meth:`Queries.progress`'s statement, built once (``:study_id`` bound at execution)."""

    def count(*where: Any) -> Any:
        return sa.select(sa.func.count()).where(T.c.study_id == S.c.id, *where).scalar_subquery()

    in_stage = T.c.stage == S.c.current_stage
    return sa.select(
        S,
        count(T.c.state == TrialState.FAIL.value).label("n_failed"),
        count(in_stage).label("n_created"),
        count(in_stage, T.c.state.in_(UNFINISHED)).label("n_unfinished"),
    ).where(S.c.id == sa.bindparam("study_id"))


@functools.cache
def _compute_query() -> sa.Select[Any]:
    """:meth:`Queries.compute`'s statement, built once (``:study_id`` bound at execution): one row
    per stage with a recorded trial (the study's total is their sum: one pass over the index)."""
    return (
        sa.select(
            T.c.stage,
            sa.func.sum(T.c.epochs_trained).label("epochs"),
            sa.func.sum(T.c.train_seconds).label("seconds"),
            sa.func.count(T.c.epochs_trained).label("trials"),
        )
        .where(T.c.study_id == sa.bindparam("study_id"), T.c.epochs_trained.is_not(None))
        .group_by(T.c.stage)
    )


class Queries(StorageBase):
    """The reads: studies by name or id, a study's stages and trials, its best trials and counts."""

    # -- studies -----------------------------------------------------------------------------

    def find_study(self, name: str) -> StudyRow | None:
        """The study called ``name``, or ``None``."""
        with self._read() as conn:
            m = conn.execute(sa.select(S).where(S.c.name == name)).mappings().first()
        return None if m is None else row_from(StudyRow, m)

    def get_study(self, name: str) -> StudyRow:
        """The study called ``name``.

        Raises:
            StudyNotFoundError: No such study.
        """
        study = self.find_study(name)
        if study is None:
            raise StudyNotFoundError(f"no study named {name!r}")
        return study

    def get_study_by_id(self, study_id: int) -> StudyRow:
        """The study with id ``study_id``.

        Raises:
            StudyNotFoundError: No such study.
        """
        with self._read() as conn:
            m = conn.execute(sa.select(S).where(S.c.id == study_id)).mappings().first()
        if m is None:
            raise StudyNotFoundError(f"no study with id {study_id}")
        return row_from(StudyRow, m)

    def list_studies(self) -> list[StudyRow]:
        """Every study, oldest first."""
        with self._read() as conn:
            return [row_from(StudyRow, m) for m in conn.execute(sa.select(S).order_by(S.c.id)).mappings()]

    def stages(self, study_id: int) -> list[StageRow]:
        """The stages of a study, by index."""
        with self._read() as conn:
            rows = conn.execute(sa.select(G).where(G.c.study_id == study_id).order_by(G.c.index))
            return [row_from(StageRow, m) for m in rows.mappings()]

    # -- trials ------------------------------------------------------------------------------

    def trials(
        self, study_id: int, states: Iterable[TrialState | str] | None = None, stage: int | None = None
    ) -> list[TrialRow]:
        """Trials of a study by number, optionally only those in ``states`` and/or of one stage
        (all in memory: :meth:`iter_trials` streams them)."""
        query = self._trials_query(study_id, states, stage)
        with self._read() as conn:
            return [row_from(TrialRow, m) for m in conn.execute(query).mappings()]

    def iter_trials(
        self,
        study_id: int,
        states: Iterable[TrialState | str] | None = None,
        stage: int | None = None,
        *,
        batch: int = STREAM_BATCH,
    ) -> Iterator[TrialRow]:
        """:meth:`trials`, streamed: the rows are fetched ``batch`` at a time (a server-side
        cursor on PostgreSQL, SQLite's stepping cursor), so a listing or an export of 100k trials
        with their curves holds a batch, not the study.

        The read transaction stays open while the caller iterates; it ends when the iteration
        does (or the generator is closed).
        """
        query = self._trials_query(study_id, states, stage)
        with self._read() as conn:
            result = conn.execution_options(yield_per=batch).execute(query)
            for m in result.mappings():
                yield row_from(TrialRow, m)

    def trial_params(
        self, study_id: int, states: Iterable[TrialState | str] | None = None, *, batch: int = STREAM_BATCH
    ) -> Iterator[tuple[dict[str, Any], str | None]]:
        """``(params, reason)`` of each trial by number, streamed as :meth:`iter_trials` streams:
        what a CSV listing needs to know its columns before it writes its first row."""
        query = self._trials_query(study_id, states, None).with_only_columns(T.c.params, T.c.reason)
        with self._read() as conn:
            for params, reason in conn.execution_options(yield_per=batch).execute(query):
                yield loads(params), reason

    @staticmethod
    def _trials_query(
        study_id: int, states: Iterable[TrialState | str] | None, stage: int | None
    ) -> sa.Select[Any]:
        query = sa.select(T).where(T.c.study_id == study_id).order_by(T.c.number)
        if states is not None:
            query = query.where(T.c.state.in_([TrialState(s).value for s in states]))
        if stage is not None:
            query = query.where(T.c.stage == stage)
        return query

    def find_trial(self, trial_id: int) -> TrialRow | None:
        """The trial of id ``trial_id``, or None when there is none."""
        with self._read() as conn:
            m = conn.execute(sa.select(T).where(T.c.id == trial_id)).mappings().first()
        return None if m is None else row_from(TrialRow, m)

    def promotions(self, study_id: int) -> list[tuple[int, int, int]]:
        """``(stage, parent number, number)`` of each trial of the study that continues another
        trial's network (promotion across stages), by number."""
        parent = T.alias("parent")
        query = (
            sa.select(T.c.stage, parent.c.number, T.c.number)
            .join(parent, parent.c.id == T.c.parent_id)
            # ix_hpo_trials_parent holds the promoted trials only: none where no study promotes.
            # Sorted here, not by ORDER BY number, which SQLite would read from the (study_id,
            # number) index instead, past every trial of the study, to save sorting the few.
            .where(T.c.study_id == study_id, T.c.parent_id.is_not(None))
        )
        with self._read() as conn:
            return sorted(((int(s), int(p), int(n)) for s, p, n in conn.execute(query)), key=lambda r: r[2])

    def best_trials(self, study_id: int, direction: str, k: int = 1) -> list[TrialRow]:
        """The ``k`` best COMPLETE trials, best first; ties go to the later stage (longer training),
        then the lower number. The first ``k`` entries of ``ix_hpo_trials_study_state_value``
        (ties on value sorted among those), so neither a progress display nor ``hpo best`` reads
        every trial.
        """
        order = T.c.value.desc() if direction == "maximize" else T.c.value.asc()
        query = (
            sa.select(T)
            .where(T.c.study_id == study_id, T.c.state == TrialState.COMPLETE.value)
            .where(T.c.value.is_not(None))
            .order_by(order, T.c.stage.desc(), T.c.number)
            .limit(k)
        )
        with self._read() as conn:
            return [row_from(TrialRow, m) for m in conn.execute(query).mappings()]

    def counts(self, study_id: int, stage: int | None = None) -> dict[TrialState, int]:
        """Number of trials in each state (every state present, zeros included)."""
        query = sa.select(T.c.state, sa.func.count()).where(T.c.study_id == study_id).group_by(T.c.state)
        if stage is not None:
            query = query.where(T.c.stage == stage)
        out = dict.fromkeys(TrialState, 0)
        with self._read() as conn:
            for state, n in conn.execute(query):
                out[TrialState(state)] = int(n)
        return out

    def compute(self, study_id: int) -> StudyCompute:
        """The epochs and training seconds its trials recorded, per stage and in total: SQL sums,
        in one statement, over ``ix_hpo_trials_study_stage_compute`` alone (a study that does not
        exist has none)."""
        stages: dict[int, Compute] = {}
        with self._read() as conn:
            for stage, epochs, seconds, n in conn.execute(_compute_query(), {"study_id": study_id}):
                stages[int(stage)] = Compute(int(epochs or 0), float(seconds or 0.0), int(n))
        total = Compute(
            sum(c.epochs for c in stages.values()),
            sum((c.seconds for c in stages.values()), 0.0),
            sum(c.trials for c in stages.values()),
        )
        return StudyCompute(total, stages)

    def progress(self, study_id: int) -> StudyProgress:
        """The study with the counts :func:`hpo.advance` decides on, in one statement.

        The stage counts are index ranges of the current stage, so the cost does not grow with the
        stages before it.

        Raises:
            StudyNotFoundError: No such study.
        """
        with self._read() as conn:
            return self._progress(conn, study_id)

    @staticmethod
    def _progress(conn: Connection, study_id: int) -> StudyProgress:
        """:meth:`progress` in the caller's transaction (``finish`` reads it in its own)."""
        m = conn.execute(_progress_query(), {"study_id": study_id}).mappings().first()
        if m is None:
            raise StudyNotFoundError(f"no study with id {study_id}")
        return StudyProgress(
            row_from(StudyRow, m), int(m["n_failed"]), int(m["n_created"]), int(m["n_unfinished"])
        )
