"""hpo_studies.queue: the message queue a study's trials go to (NULL: run by local processes).

A worker's reaper only re-sends trials of studies on its own queue, so several brokers (or local
runs) can share one database without taking each other's trials.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("hpo_studies") as batch:
        batch.add_column(sa.Column("queue", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("hpo_studies") as batch:
        batch.drop_column("queue")
