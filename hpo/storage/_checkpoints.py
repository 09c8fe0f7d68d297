"""The artifacts a trial's rows name: its rolling mid-run checkpoint, and every artifact of a study.

The bytes live in the study's artifact store (:mod:`hpo.artifacts`); hpo's tables hold only their
ids. ``hpo_trials.checkpoint`` is a running trial's latest checkpoint (kept when its worker is
lost, so the retry resumes from it), ``hpo_trials.model`` a finished trial's final checkpoint
(written by ``finish``, which also clears ``checkpoint``: the final model supersedes it).
"""

from __future__ import annotations

from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ._base import T
from ._queries import Queries
from ._trial_states import held_claim

__all__ = ["CheckpointRecord", "Checkpoints", "study_artifact_ids"]


class CheckpointRecord(NamedTuple):
    """What :meth:`Checkpoints.record_checkpoint` did.

    Attributes:
        recorded: Whether the new checkpoint was recorded. ``False``: the claim was lost (the
            trial was requeued, finished or taken over); nothing was written and the caller
            removes the artifact it just stored, which nothing names.
        previous: The checkpoint it replaced (the caller removes it), or None.
    """

    recorded: bool
    previous: str | None


def study_artifact_ids(conn: Connection, study_id: int) -> list[str]:
    """Every artifact id the study's trials name (models and checkpoints), read on ``conn``."""
    rows = conn.execute(
        sa.select(T.c.model, T.c.checkpoint)
        .where(T.c.study_id == study_id, sa.or_(T.c.model.is_not(None), T.c.checkpoint.is_not(None)))
        .order_by(T.c.number)
    )
    return [artifact for row in rows for artifact in row if artifact is not None]


class Checkpoints(Queries):
    """A running trial's mid-run checkpoint, recorded under its claim."""

    def record_checkpoint(
        self, trial_id: int, worker: str, attempt: int, artifact_id: str, epoch: int
    ) -> CheckpointRecord:
        """Record a running trial's latest checkpoint: a compare-and-set on its claim.

        Args:
            trial_id: The trial.
            worker: The worker that claimed it.
            attempt: The claim's ``attempts`` value.
            artifact_id: The checkpoint's id in the study's artifact store (already written).
            epoch: The epoch it was taken after.

        Returns:
            Whether it was recorded (``False``: the claim was lost) and the checkpoint it replaced.
        """
        held = held_claim(trial_id, worker, attempt)
        previous = sa.select(T.c.checkpoint).where(*held)
        if not self.is_sqlite:  # SQLite's BEGIN IMMEDIATE already serialises writers
            previous = previous.with_for_update()
        with self._write() as conn:
            row = conn.execute(previous).first()
            if row is None:
                return CheckpointRecord(False, None)
            conn.execute(sa.update(T).where(*held).values(checkpoint=artifact_id, checkpoint_epoch=epoch))
        return CheckpointRecord(True, row.checkpoint)
