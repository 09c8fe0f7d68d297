"""hpo_studies: the INTERRUPTED state and the runner of a local study.

A local run stopped by Ctrl-C or SIGTERM is INTERRUPTED (not RUNNING: no process runs it, and
`hpo resume` continues it). ``runner`` names the process running a local study (``host:pid``), so
that a run killed outright (SIGKILL, a power cut) is told apart from one still going.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD = "state IN ('RUNNING', 'COMPLETE', 'CANCELLED', 'FAILED')"
_NEW = "state IN ('RUNNING', 'COMPLETE', 'CANCELLED', 'FAILED', 'INTERRUPTED')"


def upgrade() -> None:
    with op.batch_alter_table("hpo_studies") as batch:
        batch.drop_constraint("ck_hpo_studies_state", type_="check")
        batch.create_check_constraint("ck_hpo_studies_state", _NEW)
        batch.add_column(sa.Column("runner", sa.String(length=255), nullable=True))


def downgrade() -> None:
    op.execute("UPDATE hpo_studies SET state = 'CANCELLED' WHERE state = 'INTERRUPTED'")
    with op.batch_alter_table("hpo_studies") as batch:
        batch.drop_column("runner")
        batch.drop_constraint("ck_hpo_studies_state", type_="check")
        batch.create_check_constraint("ck_hpo_studies_state", _OLD)
