"""Compute is accounted, and a trial may continue another: epochs and seconds per trial, its parent.

``hpo_trials.epochs_trained`` is the number of epochs this trial trained itself (a trial resumed
from its own checkpoint after a lost worker counts the epochs its attempts trained; a promoted
trial that continues its parent's network does not count the parent's epochs);
``hpo_trials.train_seconds`` the wall seconds its attempts spent training. Both are NULL for a
trial that has not finished, or that finished before compute was accounted.
``hpo_trials.parent_id`` is the trial whose trained network this one continues (a promotion
across stages); NULL for a trial trained from scratch.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("hpo_trials") as batch:
        batch.add_column(sa.Column("epochs_trained", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("train_seconds", sa.Double(), nullable=True))
        batch.add_column(sa.Column("parent_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            "fk_hpo_trials_parent", "hpo_trials", ["parent_id"], ["id"], ondelete="SET NULL"
        )


def downgrade() -> None:
    with op.batch_alter_table("hpo_trials") as batch:
        batch.drop_constraint("fk_hpo_trials_parent", type_="foreignkey")
        batch.drop_column("parent_id")
        batch.drop_column("train_seconds")
        batch.drop_column("epochs_trained")
