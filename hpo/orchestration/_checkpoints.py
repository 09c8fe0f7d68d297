"""One trial's checkpoints and final model, in its study's artifact store.

A running trial saves a checkpoint every ``checkpoints.every`` epochs (only the latest is kept:
its id is on the trial's row, the one before is removed), so a retry after its worker died
resumes from it; a COMPLETE trial saves its final checkpoint as its model, which a trial of a
later stage that continues it (promotion) resumes from. A store that fails never fails the trial:
the failure is logged and the trial goes on without that artifact.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

import engine

from ..storage import Storage, StudyRow, TrialRow

if TYPE_CHECKING:
    from ..artifacts import Artifacts

__all__ = ["TrialCheckpoints"]

log = logging.getLogger("hpo.orchestration")


class TrialCheckpoints:
    """The artifacts of one claimed trial (its claim: ``worker`` and ``trial.attempts``).

    Args:
        storage: The database.
        study: The trial's study (its ``artifacts`` URL names the store; None: it keeps none).
        trial: The claimed trial.
        worker: The claiming worker's id.
        every: Epochs between checkpoints (0: none).
        epochs: The trial's epochs (no checkpoint after the last one: the model is saved then).
    """

    def __init__(
        self, storage: Storage, study: StudyRow, trial: TrialRow, worker: str, every: int, epochs: int
    ) -> None:
        self.storage, self.trial, self.worker = storage, trial, worker
        self.every, self.epochs = every, epochs
        self.trainer: engine.Trainer | None = None  # set once built: the epoch callback needs it
        self.preprocessing: engine.Preprocessing | None = None
        self.latest: str | None = trial.checkpoint  # the row's checkpoint, removed once superseded
        self.store: Artifacts | None = None
        if study.artifacts:
            from ..artifacts import open_store

            try:
                self.store = open_store(study.artifacts)
            except Exception as exc:
                log.warning(
                    "trial %s: artifact store unusable, no checkpoints or model: %s", trial.number, exc
                )

    def resume_point(self) -> engine.Checkpoint | None:
        """The trial's latest checkpoint, when a previous attempt saved one it can be read from."""
        artifact = self.trial.checkpoint
        if self.store is None or not artifact:
            return None
        try:
            checkpoint = engine.Checkpoint.from_bytes(self.store.get(artifact))
        except Exception as exc:
            log.warning(
                "trial %s: checkpoint %s cannot be read, starting afresh: %s",
                self.trial.number,
                artifact,
                exc,
            )
            return None
        log.warning(
            "trial %s (attempt %s) resumes from its checkpoint at epoch %s",
            self.trial.number,
            self.trial.attempts,
            checkpoint.epoch,
        )
        return checkpoint

    def parent_point(self) -> engine.Checkpoint | None:
        """The model of the trial this one continues (its parent: promotion across stages), when
        the trial has one and it can be read; None otherwise (logged when it cannot be read)."""
        t, parent = self.trial, None
        if t.parent_id is None:
            return None
        try:
            if self.store is None:
                raise LookupError("the study keeps no artifact store")
            parent = self.storage.find_trial(t.parent_id)
            if parent is None or not parent.model:
                raise LookupError("it kept no model")
            return engine.Checkpoint.from_bytes(self.store.get(parent.model))
        except Exception as exc:
            which = "its parent" if parent is None else f"trial {parent.number}"
            log.warning("trial %s cannot continue the model of %s: %s", t.number, which, exc)
            return None

    def after_epoch(self, epoch: int) -> None:
        """Save a checkpoint if ``epoch`` is due one (called from the epoch callback)."""
        if self.store is None or self.every <= 0 or epoch % self.every or epoch >= self.epochs:
            return
        artifact = self._put(f"checkpoint at epoch {epoch}")
        if artifact is None:
            return
        t = self.trial
        try:
            record = self.storage.record_checkpoint(t.id, self.worker, t.attempts, artifact, epoch)
        except Exception as exc:
            log.warning("trial %s: checkpoint at epoch %s not recorded: %s", t.number, epoch, exc)
            self._remove(artifact)
            return
        if not record.recorded:  # the claim was lost: the row is another attempt's now
            self._remove(artifact)
            return
        self.latest = artifact
        if record.previous is not None:
            self._remove(record.previous)

    def save_model(self) -> str | None:
        """Put the run's final checkpoint (its model); its artifact id, or None."""
        return None if self.store is None else self._put("model")

    def after_finish(self, recorded: bool, model: str | None) -> None:
        """Remove what the finish made obsolete: the rolling checkpoint (superseded by the model),
        or, when nothing was recorded (the claim was lost), the model just put."""
        if not recorded:
            if model is not None:
                self._remove(model)
            return
        if self.latest is not None:
            self._remove(self.latest)
            self.latest = None

    def _put(self, what: str) -> str | None:
        assert self.store is not None
        try:
            if self.trainer is None:
                raise RuntimeError("no trainer")
            checkpoint = dataclasses.replace(self.trainer.checkpoint(), preprocessing=self.preprocessing)
            return self.store.put(checkpoint.to_bytes())
        except Exception as exc:
            log.warning("trial %s: %s not saved: %s", self.trial.number, what, exc)
            return None

    def _remove(self, artifact: str) -> None:
        if self.store is None:
            return
        try:
            self.store.remove(artifact)
        except Exception as exc:
            log.warning("trial %s: artifact %s not removed: %s", self.trial.number, artifact, exc)
