"""hpo_trials.enqueued_at: when a trial was last put on a message queue.

The reaper re-sends PENDING trials whose message is older than a threshold (a broker without
persistence loses queued messages on restart; the database knows which trials are owed).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("hpo_trials") as batch:
        batch.add_column(sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index("ix_hpo_trials_state_enqueued", ["state", "enqueued_at"])


def downgrade() -> None:
    with op.batch_alter_table("hpo_trials") as batch:
        batch.drop_index("ix_hpo_trials_state_enqueued")
        batch.drop_column("enqueued_at")
