"""SQLAlchemy models of the ``hpo_*`` tables.

Every table carries the ``hpo_`` prefix so that Optuna's own, unprefixed tables live in the same
database; the Alembic environment in ``migrations/`` only ever looks at ``hpo_*`` tables.
JSON is stored as text (portable across SQLite and PostgreSQL); timestamps are timezone-aware UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "FINISHED_STATES",
    "Base",
    "Stage",
    "StageState",
    "Study",
    "StudyState",
    "Trial",
    "TrialState",
    "UTCDateTime",
    "metadata",
]

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class StudyState(StrEnum):
    """State of a study."""

    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"
    INTERRUPTED = "INTERRUPTED"
    """A local run stopped by Ctrl-C or SIGTERM: nothing runs it; ``hpo resume`` continues it."""


class StageState(StrEnum):
    """State of a stage: ``COMPLETE`` once :meth:`Storage.advance` moved past it."""

    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"


class TrialState(StrEnum):
    """State of a trial (see the state machine in ``docs/architecture.md``)."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    FAIL = "FAIL"
    PRUNED = "PRUNED"


FINISHED_STATES = frozenset({TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED})


def _in(column: str, enum: type[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(m.value) for m in enum)})"


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    PostgreSQL stores ``timestamptz``. SQLite has no time zones: values are stored as naive UTC in
    SQLAlchemy's fixed-width text format, so comparisons (lease expiry) stay correct. Naive
    datetimes are refused on the way in; values come back aware, in UTC.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: hpo stores timezone-aware UTC times only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of the ``hpo_*`` tables."""

    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: dict[Any, Any] = {datetime: UTCDateTime()}  # noqa: RUF012


metadata = Base.metadata


class Study(Base):
    """One study: its validated spec, its state and the stage it is in."""

    __tablename__ = "hpo_studies"
    __table_args__ = (
        sa.CheckConstraint(_in("state", StudyState), name="state"),
        sa.CheckConstraint("direction IN ('minimize', 'maximize')", name="direction"),
        sa.CheckConstraint("current_stage >= 0", name="current_stage"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(sa.String(512), unique=True)
    spec: Mapped[str] = mapped_column(sa.Text)
    spec_hash: Mapped[str] = mapped_column(sa.String(64))
    direction: Mapped[str] = mapped_column(sa.String(8))
    state: Mapped[str] = mapped_column(sa.String(16))
    current_stage: Mapped[int] = mapped_column(sa.Integer)
    optuna_study_id: Mapped[int | None] = mapped_column(sa.Integer)
    test_result: Mapped[str | None] = mapped_column(sa.Text)
    reason: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    queue: Mapped[str | None] = mapped_column(sa.String(255))
    optuna_link: Mapped[str | None] = mapped_column(sa.String(64))
    runner: Mapped[str | None] = mapped_column(sa.String(255))
    artifacts: Mapped[str | None] = mapped_column(sa.Text)


class Stage(Base):
    """One stage of a study: its trial count, epoch budget and the space it samples."""

    __tablename__ = "hpo_stages"
    __table_args__ = (
        sa.CheckConstraint(_in("state", StageState), name="state"),
        sa.CheckConstraint("n_trials >= 1", name="n_trials"),
    )

    study_id: Mapped[int] = mapped_column(
        sa.Integer, sa.ForeignKey("hpo_studies.id", ondelete="CASCADE"), primary_key=True
    )
    index: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    n_trials: Mapped[int] = mapped_column(sa.Integer)
    epochs: Mapped[int] = mapped_column(sa.Integer)
    space: Mapped[str] = mapped_column(sa.Text)
    state: Mapped[str] = mapped_column(sa.String(16))
    created_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]


class Trial(Base):
    """One trial: parameters and seed, the claim that runs it, and its result."""

    __tablename__ = "hpo_trials"
    __table_args__ = (
        sa.UniqueConstraint("study_id", "number"),
        sa.ForeignKeyConstraint(
            ["study_id", "stage"], ["hpo_stages.study_id", "hpo_stages.index"], ondelete="CASCADE"
        ),
        sa.CheckConstraint(_in("state", TrialState), name="state"),
        sa.CheckConstraint("number >= 0", name="number"),
        sa.CheckConstraint("attempts >= 0", name="attempts"),
        # claim / counts per study; the stage FK and "is this stage finished"; lease scans.
        sa.Index("ix_hpo_trials_study_state", "study_id", "state"),
        sa.Index("ix_hpo_trials_study_stage_state", "study_id", "stage", "state"),
        sa.Index("ix_hpo_trials_state_lease", "state", "lease_expires_at"),
        # the reaper's scan for PENDING trials whose message may have been lost
        sa.Index("ix_hpo_trials_state_enqueued", "state", "enqueued_at"),
        # A large study's reads from index entries alone (revision 0008): its best trials (ORDER
        # BY value LIMIT k), its compute per stage (covering); and the parent foreign key's index
        # (deleting a trial looks up the trials that continue it; the promoted trials).
        sa.Index("ix_hpo_trials_study_state_value", "study_id", "state", "value"),
        sa.Index("ix_hpo_trials_study_stage_compute", "study_id", "stage", "epochs_trained", "train_seconds"),
        sa.Index(
            "ix_hpo_trials_parent",
            "parent_id",
            postgresql_where=sa.text("parent_id IS NOT NULL"),
            sqlite_where=sa.text("parent_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    study_id: Mapped[int] = mapped_column(sa.Integer, sa.ForeignKey("hpo_studies.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(sa.Integer)
    stage: Mapped[int] = mapped_column(sa.Integer)
    params: Mapped[str] = mapped_column(sa.Text)
    seed: Mapped[int] = mapped_column(sa.BigInteger)
    state: Mapped[str] = mapped_column(sa.String(16))
    attempts: Mapped[int] = mapped_column(sa.Integer)
    worker: Mapped[str | None] = mapped_column(sa.String(255))
    lease_expires_at: Mapped[datetime | None]
    value: Mapped[float | None] = mapped_column(sa.Double)
    reason: Mapped[str | None] = mapped_column(sa.Text)
    curves: Mapped[str | None] = mapped_column(sa.Text)
    intermediate: Mapped[str | None] = mapped_column(sa.Text)
    optuna_trial_id: Mapped[int | None] = mapped_column(sa.Integer)
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    enqueued_at: Mapped[datetime | None]
    checkpoint: Mapped[str | None] = mapped_column(sa.String(64))
    checkpoint_epoch: Mapped[int | None] = mapped_column(sa.Integer)
    model: Mapped[str | None] = mapped_column(sa.String(64))
    epochs_trained: Mapped[int | None] = mapped_column(sa.Integer)
    train_seconds: Mapped[float | None] = mapped_column(sa.Double)
    parent_id: Mapped[int | None] = mapped_column(
        sa.Integer, sa.ForeignKey("hpo_trials.id", ondelete="SET NULL", name="fk_hpo_trials_parent")
    )
