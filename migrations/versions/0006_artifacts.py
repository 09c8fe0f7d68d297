"""Trained networks are kept: the study's artifact store, and each trial's checkpoint and model.

``hpo_studies.artifacts`` is the URL of the study's artifact store (an Optuna artifact store:
``file:///DIR`` or ``s3://BUCKET/PREFIX``; NULL for a study made before models were kept).
``hpo_trials.checkpoint`` / ``checkpoint_epoch`` name the artifact of a running trial's latest
mid-run checkpoint and its epoch; ``hpo_trials.model`` the artifact of a finished trial's final
checkpoint (its trained network).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("hpo_studies") as batch:
        batch.add_column(sa.Column("artifacts", sa.Text(), nullable=True))
    with op.batch_alter_table("hpo_trials") as batch:
        batch.add_column(sa.Column("checkpoint", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("checkpoint_epoch", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("model", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("hpo_trials") as batch:
        batch.drop_column("model")
        batch.drop_column("checkpoint_epoch")
        batch.drop_column("checkpoint")
    with op.batch_alter_table("hpo_studies") as batch:
        batch.drop_column("artifacts")
