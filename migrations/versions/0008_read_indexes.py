"""Indexes for a large study: its best trials, its compute, its promotions, its deletion.

At 100k trials, ``hpo best`` and ``hpo status`` read only index entries:

* ``ix_hpo_trials_study_state_value`` (``study_id, state, value``): the best ``k`` COMPLETE
  trials are the first ``k`` entries of the study's COMPLETE range, in either direction (ties
  on value are sorted among those few rows), instead of a sort of every COMPLETE trial;
* ``ix_hpo_trials_study_stage_compute`` (``study_id, stage, epochs_trained, train_seconds``):
  the compute per stage is summed from the index alone (an index-only scan on PostgreSQL, a
  covering index on SQLite), without reading the trials' rows and their curves;
* ``ix_hpo_trials_parent`` (``parent_id``, of the promoted trials only): the index of the foreign
  key of a promoted trial to the trial it continues. Without it, deleting a study checked every trial it deleted against
  every row of the table (``ON DELETE SET NULL``: quadratic, minutes at a few thousand trials on
  SQLite); and a study's promoted trials are read from it (none, where no study promotes).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = {
    "ix_hpo_trials_study_state_value": ["study_id", "state", "value"],
    "ix_hpo_trials_study_stage_compute": ["study_id", "stage", "epochs_trained", "train_seconds"],
    "ix_hpo_trials_parent": ["parent_id"],
}
PROMOTED = "parent_id IS NOT NULL"
"""The parent index holds the promoted trials only: no entry (nothing to write) for the others."""


def upgrade() -> None:
    # Plain CREATE INDEX, not batch mode: SQLite creates an index without copying the table.
    for name, columns in INDEXES.items():
        where = {"postgresql_where": sa.text(PROMOTED), "sqlite_where": sa.text(PROMOTED)}
        op.create_index(name, "hpo_trials", columns, **(where if name == "ix_hpo_trials_parent" else {}))


def downgrade() -> None:
    for name in INDEXES:
        op.drop_index(name, table_name="hpo_trials")
