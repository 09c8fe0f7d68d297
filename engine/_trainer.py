"""Mini-batch training with per-epoch curves, an epoch callback and typed outcomes."""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._errors import ConfigError
from ._net import MultiLayerNet
from ._optimizers import Optimizer

__all__ = ["EpochCallback", "EpochRecord", "Outcome", "TrainResult", "Trainer"]

Array = NDArray[np.floating]


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


class Trainer:
    """Trains a network with shuffled mini-batches.

    Each epoch visits every training row once, in an order drawn from ``rng``. A step is one
    forward and one backward pass; the loss it reports comes from that same pass. A step whose
    loss is not finite ends the run with :attr:`Outcome.DIVERGED` (the parameters are then
    garbage and no score is produced), never with an exception or a NaN score.

    Args:
        net: The network to train (modified in place).
        optimizer: The optimizer stepping ``net.params``.
        x_train: Training features ``(n, d)``.
        t_train: Training labels ``(n,)``.
        x_val: Validation features.
        t_val: Validation labels.
        epochs: Number of passes over the training data.
        batch_size: Rows per step (the last batch of an epoch may be smaller).
        rng: Generator (or seed) for the shuffling.
        eval_interval: Evaluate every this many epochs (the last epoch is always evaluated).
        callback: Called with each :class:`EpochRecord`; returning True stops the run.
        time_limit: Seconds after which the run stops with :attr:`Outcome.TIMED_OUT`.
        eval_batch_size: Rows per evaluation forward pass (bounds memory on large splits).
    """

    def __init__(
        self,
        net: MultiLayerNet,
        optimizer: Optimizer,
        x_train: Array,
        t_train: NDArray[np.integer],
        x_val: Array,
        t_val: NDArray[np.integer],
        *,
        epochs: int,
        batch_size: int = 100,
        rng: np.random.Generator | int | None = None,
        eval_interval: int = 1,
        callback: EpochCallback | None = None,
        time_limit: float | None = None,
        eval_batch_size: int = 2048,
    ) -> None:
        if epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {epochs}")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        if eval_interval < 1:
            raise ConfigError(f"eval_interval must be >= 1, got {eval_interval}")
        if x_train.shape[0] == 0 or x_train.shape[0] != t_train.shape[0]:
            raise ConfigError(f"x_train and t_train need the same non-zero length, got {x_train.shape[0]}")
        if x_val.shape[0] != t_val.shape[0]:
            raise ConfigError("x_val and t_val need the same length")
        if time_limit is not None and not time_limit > 0:
            raise ConfigError(f"time_limit must be > 0, got {time_limit}")
        self.net = net
        self.optimizer = optimizer
        # Training runs in the network's dtype; converting once here keeps every step cast-free.
        self.x_train = np.ascontiguousarray(x_train, dtype=net.dtype)
        self.t_train = np.asarray(t_train)
        self.x_val = np.ascontiguousarray(x_val, dtype=net.dtype)
        self.t_val = np.asarray(t_val)
        self.epochs = int(epochs)
        self.batch_size = int(batch_size)
        self.rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        self.eval_interval = int(eval_interval)
        self.callback = callback
        self.time_limit = time_limit
        self.eval_batch_size = eval_batch_size
        # Share the first forward pass of each epoch with the previous epoch's evaluation
        # (see _evaluate); only exact when training and evaluation passes coincide.
        self.reuse_forward = net.deterministic

    def _evaluate(
        self, next_x: Array | None, next_t: NDArray[np.integer] | None
    ) -> tuple[float, float, float, Array | None]:
        """Training accuracy, validation loss and validation accuracy with the current parameters.

        When the next epoch's shuffled data is given (deterministic networks only), its first batch
        goes through a *training* forward pass, which is bit-identical to an evaluation pass here:
        its scores count towards the training accuracy and are returned so that the next step
        reuses them instead of running the same forward pass again. The rest of the rows go
        through an ordinary evaluation pass. This saves a quarter of the evaluation cost of the
        book's protocol (400 training rows, batch 100) and changes no number.
        """
        net, bs = self.net, self.eval_batch_size
        first_scores = None
        if next_x is None or next_t is None:
            _, train_acc = net.evaluate(self.x_train, self.t_train, bs, with_loss=False)
        else:
            k = min(self.batch_size, next_x.shape[0])
            first_scores = net.forward(next_x[:k], train=True)
            correct = np.count_nonzero(first_scores.argmax(axis=1) == next_t[:k])
            correct += net.count_correct(next_x[k:], next_t[k:], bs)
            train_acc = int(correct) / next_x.shape[0]
        val_loss, val_acc = net.evaluate(self.x_val, self.t_val, bs)
        return train_acc, val_loss, val_acc, first_scores

    def fit(self) -> TrainResult:  # one piece on purpose: the engine's hot loop, free of extra calls
        """Run the training loop and return its outcome and curves."""
        net, opt, params = self.net, self.optimizer, self.net.flat_params
        n, bs = self.x_train.shape[0], self.batch_size
        result = TrainResult(Outcome.COMPLETED)
        start = time.perf_counter()
        deadline = None if self.time_limit is None else start + self.time_limit
        order = self.rng.permutation(n)
        x_shuf, t_shuf = self.x_train[order], self.t_train[order]
        first_scores: Array | None = None  # the forward pass of the next step, if already run

        # Overflow in a diverging run is expected and handled by the finiteness check below.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            for epoch in range(1, self.epochs + 1):
                epoch_start = time.perf_counter()
                loss_sum = 0.0
                for lo in range(0, n, bs):
                    xb, tb = x_shuf[lo : lo + bs], t_shuf[lo : lo + bs]
                    loss = net.loss_and_grad(xb, tb, first_scores)
                    first_scores = None
                    result.steps += 1
                    if not math.isfinite(loss):
                        result.outcome = Outcome.DIVERGED
                        result.reason = (
                            f"non-finite training loss ({loss}) at epoch {epoch}, step {result.steps}"
                        )
                        result.seconds = time.perf_counter() - start
                        return result
                    opt.update(params)
                    loss_sum += loss * xb.shape[0]
                    if deadline is not None and time.perf_counter() > deadline:
                        result.outcome = Outcome.TIMED_OUT
                        result.reason = f"time limit of {self.time_limit:g} s reached in epoch {epoch}"
                        result.seconds = time.perf_counter() - start
                        return result

                # The next epoch's order is drawn now (the same draw, in the same sequence, as at
                # the start of that epoch) so that the evaluation can share its first forward pass.
                # One gather per epoch, then contiguous slices: cheaper than a gather per step.
                last = epoch == self.epochs
                if not last:
                    order = self.rng.permutation(n)
                    x_shuf, t_shuf = self.x_train[order], self.t_train[order]
                if epoch % self.eval_interval == 0 or last:
                    reuse = self.reuse_forward and not last
                    train_acc, val_loss, val_acc, first_scores = self._evaluate(
                        x_shuf if reuse else None, t_shuf if reuse else None
                    )
                    if self.x_val.shape[0] and not math.isfinite(val_loss):
                        # Finite training loss but infinite validation loss: the weights blew up
                        # at the last step; the run diverged all the same.
                        result.outcome = Outcome.DIVERGED
                        result.reason = f"non-finite validation loss ({val_loss}) at epoch {epoch}"
                        result.seconds = time.perf_counter() - start
                        return result
                    record = EpochRecord(
                        epoch, loss_sum / n, train_acc, val_loss, val_acc, time.perf_counter() - epoch_start
                    )
                else:
                    seconds = time.perf_counter() - epoch_start
                    record = EpochRecord(epoch, loss_sum / n, None, None, None, seconds)
                result.history.append(record)
                if self.callback is not None and self.callback(record):
                    result.outcome = Outcome.STOPPED
                    result.reason = f"stopped by callback after epoch {epoch}"
                    break
        result.seconds = time.perf_counter() - start
        return result
