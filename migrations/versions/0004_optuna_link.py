"""hpo_studies.optuna_link: a token shared with the study's Optuna study (system attribute ``hpo:link``).

hpo writes to or deletes only the Optuna study its tables link to. The id and the name alone
cannot tell ours from a user's study made in its place: SQLite gives a new row the id of a deleted
last one, and a user may create a study of the same name. The token, written in both places by the
transaction that creates them, can.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("hpo_studies") as batch:
        batch.add_column(sa.Column("optuna_link", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("hpo_studies") as batch:
        batch.drop_column("optuna_link")
