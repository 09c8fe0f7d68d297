"""hpo_studies, hpo_stages, hpo_trials.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "hpo_studies",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=512), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("spec_hash", sa.String(length=64), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("current_stage", sa.Integer(), nullable=False),
        sa.Column("optuna_study_id", sa.Integer(), nullable=True),
        sa.Column("test_result", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("updated_at", _TZ, nullable=False),
        sa.CheckConstraint(
            "state IN ('RUNNING', 'COMPLETE', 'CANCELLED', 'FAILED')", name="ck_hpo_studies_state"
        ),
        sa.CheckConstraint("direction IN ('minimize', 'maximize')", name="ck_hpo_studies_direction"),
        sa.CheckConstraint("current_stage >= 0", name="ck_hpo_studies_current_stage"),
        sa.PrimaryKeyConstraint("id", name="pk_hpo_studies"),
        sa.UniqueConstraint("name", name="uq_hpo_studies_name"),
    )
    op.create_table(
        "hpo_stages",
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("n_trials", sa.Integer(), nullable=False),
        sa.Column("epochs", sa.Integer(), nullable=False),
        sa.Column("space", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("finished_at", _TZ, nullable=True),
        sa.CheckConstraint("state IN ('RUNNING', 'COMPLETE')", name="ck_hpo_stages_state"),
        sa.CheckConstraint("n_trials >= 1", name="ck_hpo_stages_n_trials"),
        sa.ForeignKeyConstraint(
            ["study_id"], ["hpo_studies.id"], name="fk_hpo_stages_study_id_hpo_studies", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("study_id", "index", name="pk_hpo_stages"),
    )
    op.create_table(
        "hpo_trials",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(length=255), nullable=True),
        sa.Column("lease_expires_at", _TZ, nullable=True),
        sa.Column("value", sa.Double(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("curves", sa.Text(), nullable=True),
        sa.Column("intermediate", sa.Text(), nullable=True),
        sa.Column("optuna_trial_id", sa.Integer(), nullable=True),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("started_at", _TZ, nullable=True),
        sa.Column("finished_at", _TZ, nullable=True),
        sa.CheckConstraint(
            "state IN ('PENDING', 'RUNNING', 'COMPLETE', 'FAIL', 'PRUNED')", name="ck_hpo_trials_state"
        ),
        sa.CheckConstraint("number >= 0", name="ck_hpo_trials_number"),
        sa.CheckConstraint("attempts >= 0", name="ck_hpo_trials_attempts"),
        sa.ForeignKeyConstraint(
            ["study_id", "stage"],
            ["hpo_stages.study_id", "hpo_stages.index"],
            name="fk_hpo_trials_study_id_stage_hpo_stages",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["study_id"], ["hpo_studies.id"], name="fk_hpo_trials_study_id_hpo_studies", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_hpo_trials"),
        sa.UniqueConstraint("study_id", "number", name="uq_hpo_trials_study_id_number"),
    )
    op.create_index("ix_hpo_trials_study_state", "hpo_trials", ["study_id", "state"])
    op.create_index("ix_hpo_trials_study_stage_state", "hpo_trials", ["study_id", "stage", "state"])
    op.create_index("ix_hpo_trials_state_lease", "hpo_trials", ["state", "lease_expires_at"])


def downgrade() -> None:
    op.drop_index("ix_hpo_trials_state_lease", table_name="hpo_trials")
    op.drop_index("ix_hpo_trials_study_stage_state", table_name="hpo_trials")
    op.drop_index("ix_hpo_trials_study_state", table_name="hpo_trials")
    op.drop_table("hpo_trials")
    op.drop_table("hpo_stages")
    op.drop_table("hpo_studies")
