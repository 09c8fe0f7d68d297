"""What training produces: per-epoch records, a run's result and how it ended."""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EpochCallback", "EpochRecord", "Outcome", "TrainResult"]


class Outcome(enum.StrEnum):
    """How a training run ended."""

    COMPLETED = "completed"
    """All epochs ran."""
    DIVERGED = "diverged"
    """The training loss became NaN or infinite; the run stopped at that step."""
    STOPPED = "stopped"
    """The epoch callback asked to stop (a pruner, a cancelled study)."""
    TIMED_OUT = "timed_out"
    """The run passed its time limit."""


@dataclass(frozen=True, slots=True)
class EpochRecord:
    """Metrics after one epoch.

    ``train_loss`` is the mean loss (with the L2 penalty) of the epoch's training steps. The
    accuracies and ``val_loss`` come from an evaluation pass after the epoch; on epochs skipped
    by the evaluation interval they are ``None``.
    """

    epoch: int
    train_loss: float
    train_acc: float | None
    val_loss: float | None
    val_acc: float | None
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        """The record as plain data, the form it takes in JSON, CSV and storage (``seconds`` to
        the microsecond)."""
        return {
            "epoch": self.epoch,
            "train_loss": self.train_loss,
            "train_acc": self.train_acc,
            "val_loss": self.val_loss,
            "val_acc": self.val_acc,
            "seconds": round(self.seconds, 6),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EpochRecord:
        """A record back from :meth:`as_dict` (a missing metric is ``None``)."""
        return cls(
            epoch=int(data["epoch"]),
            train_loss=data.get("train_loss", math.nan),
            train_acc=data.get("train_acc"),
            val_loss=data.get("val_loss"),
            val_acc=data.get("val_acc"),
            seconds=float(data.get("seconds", 0.0)),
        )


@dataclass(slots=True)
class TrainResult:
    """What a training run produced."""

    outcome: Outcome
    history: list[EpochRecord] = field(default_factory=list)
    reason: str | None = None
    steps: int = 0
    seconds: float = 0.0

    @property
    def evaluated(self) -> list[EpochRecord]:
        """The epochs that had an evaluation pass."""
        return [r for r in self.history if r.val_acc is not None]

    @property
    def final_val_acc(self) -> float | None:
        """Validation accuracy at the last evaluated epoch (None if there was none, or it diverged)."""
        if self.outcome is Outcome.DIVERGED:
            return None
        rows = self.evaluated
        return rows[-1].val_acc if rows else None

    @property
    def best_val_acc(self) -> float | None:
        """Highest validation accuracy over the evaluated epochs."""
        accs = [r.val_acc for r in self.evaluated if r.val_acc is not None]
        return max(accs) if accs else None


EpochCallback = Callable[[EpochRecord], bool | None]
"""Called after every epoch; returning True stops training with :attr:`Outcome.STOPPED`."""
