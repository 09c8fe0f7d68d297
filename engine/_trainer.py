"""Mini-batch training with per-epoch curves, an epoch callback, typed outcomes and checkpoints."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ._checkpoint import Checkpoint, OptimizerState, TrainerPosition, load_rng_state
from ._errors import CheckpointError, ConfigError
from ._net import MultiLayerNet
from ._optimizers import Optimizer
from ._records import EpochCallback, EpochRecord, Outcome, TrainResult

__all__ = ["EpochCallback", "EpochRecord", "Outcome", "TrainResult", "Trainer"]

Array = NDArray[np.floating]


@dataclass(slots=True)
class _Boundary:
    """The latest epoch boundary of a run: what :meth:`Trainer.checkpoint` needs besides the
    network, the optimizer and the generators.

    ``fit`` updates ``epoch`` and ``next_order`` once per epoch and nothing else, so that
    checkpointing costs the loop nothing unless it is used.
    """

    epoch: int
    next_order: NDArray[np.intp] | None  # the next epoch's order, once drawn
    result: TrainResult  # its history and steps so far
    start: float  # perf_counter() at which the run's seconds were 0 (earlier when resumed)
    running: bool = False


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
        time_limit: Seconds after which the run stops with :attr:`Outcome.TIMED_OUT` (a resumed
            run counts the seconds before its checkpoint too).
        eval_batch_size: Rows per evaluation forward pass (bounds memory on large splits).
        resume_from: A checkpoint to continue from (see :meth:`resume`).

    A run can be saved at any epoch boundary with :meth:`checkpoint` (from the epoch callback,
    or after :meth:`fit`) and continued by another trainer with :meth:`resume`: the curves and
    weights are then bit-identical to those of a run that was never interrupted.
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
        resume_from: Checkpoint | None = None,
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
        self._boundary: _Boundary | None = _Boundary(0, None, TrainResult(Outcome.COMPLETED), 0.0)
        self._resume: TrainerPosition | None = None  # where the next fit() starts, if not afresh
        if resume_from is not None:
            self.resume(resume_from)

    # ----------------------------------------------------------------------------------------
    # Checkpoints

    def _settings(self) -> dict[str, int]:
        return {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "eval_interval": self.eval_interval,
            "eval_batch_size": self.eval_batch_size,
            "n_train": self.x_train.shape[0],
            "n_val": self.x_val.shape[0],
            "features": self.x_train.shape[1] if self.x_train.ndim == 2 else 0,
        }

    def checkpoint(self) -> Checkpoint:
        """A snapshot of the run at its latest epoch boundary: the network (weights, batch-norm
        running statistics, dropout generator), the optimizer's state and the trainer's position
        (epoch, steps, seconds, history, shuffling generator).

        Call it from the epoch callback (the boundary of the epoch just recorded), after
        :meth:`fit` returned (its last epoch), or before it (epoch 0, or the checkpoint passed
        to :meth:`resume`). Only a call costs anything: the arrays are copied then.

        Raises:
            CheckpointError: The last :meth:`fit` ended inside an epoch (it diverged, timed out
                or raised), or the optimizer cannot be checkpointed (not one of
                :data:`~engine.OPTIMIZERS`).
        """
        position = self._resume
        if position is None:
            b = self._boundary
            if b is None:
                raise CheckpointError("no epoch boundary to checkpoint: the last fit() ended inside an epoch")
            position = TrainerPosition(
                epoch=b.epoch,
                steps=b.result.steps,
                seconds=time.perf_counter() - b.start if b.running else b.result.seconds,
                history=tuple(b.result.history),
                shuffle_rng=dict(self.rng.bit_generator.state),
                next_order=None if b.next_order is None else b.next_order.copy(),
                settings=self._settings(),
            )
        of_net = Checkpoint.of_network(self.net)
        return Checkpoint(
            of_net.network,
            of_net.arrays,
            of_net.dropout_rng,
            optimizer=OptimizerState.of(self.optimizer, self.net),
            trainer=position,
        )

    def resume(self, checkpoint: Checkpoint) -> None:
        """Continue from ``checkpoint``: the next :meth:`fit` starts at the epoch after its own.

        The network and optimizer are restored at once (in place); the trainer's network,
        optimizer, batch size and data shape must be those of the checkpoint's run, and it must
        run at least as many epochs (more extend the run). The result of :meth:`fit` then holds
        the whole run: the checkpoint's history, steps and seconds, and the epochs after it.

        Raises:
            CheckpointError: The checkpoint holds no training position (see
                :func:`~engine.save_model`) or does not fit this trainer (another architecture,
                optimizer or hyperparameter, batch size or data shape, or a later epoch than
                ``epochs``); nothing is changed then.
        """
        position = checkpoint.trainer
        if position is None:
            raise CheckpointError("this checkpoint holds a network alone, no training position")
        checkpoint.check_network(self.net)
        checkpoint.check_optimizer(self.optimizer, self.net)
        position.check_fits(self._settings())
        checkpoint._apply_network(self.net)  # all checked above: nothing changes unless all fits
        checkpoint._apply_optimizer(self.optimizer, self.net)
        self.rng = load_rng_state(self.rng, position.shuffle_rng)
        self._resume = position

    def _start(self) -> tuple[int, TrainResult, float, NDArray[np.intp] | None]:
        """Where fit() starts: the first epoch, the result so far, the start time (earlier by
        the seconds so far) and the first epoch's order if the checkpoint had drawn it."""
        position, self._resume = self._resume, None
        if position is None:
            return 1, TrainResult(Outcome.COMPLETED), time.perf_counter(), None
        result = TrainResult(Outcome.COMPLETED, list(position.history), steps=position.steps)
        return position.epoch + 1, result, time.perf_counter() - position.seconds, position.next_order

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

    def fit(self) -> TrainResult:
        """Run the training loop and return its outcome and curves.

        A fresh run starts at epoch 1; after :meth:`resume`, at the epoch after the checkpoint's.
        """
        try:
            result = self._fit()
        except BaseException:
            self._boundary = None  # raised inside an epoch or in the callback: no clean boundary
            raise
        if self._boundary is not None:
            self._boundary.running = False
            if result.outcome is Outcome.DIVERGED or result.outcome is Outcome.TIMED_OUT:
                self._boundary = None  # it ended inside an epoch
        return result

    def _fit(self) -> TrainResult:  # one piece on purpose: the engine's hot loop, free of extra calls
        """:meth:`fit` but for keeping track of whether it ended at an epoch boundary."""
        net, opt, params = self.net, self.optimizer, self.net.flat_params
        n, bs = self.x_train.shape[0], self.batch_size
        first_epoch, result, start, order = self._start()
        deadline = None if self.time_limit is None else start + self.time_limit
        if order is None and first_epoch <= self.epochs:
            order = self.rng.permutation(n)
        if order is not None:
            x_shuf, t_shuf = self.x_train[order], self.t_train[order]
        first_scores: Array | None = None  # the forward pass of the next step, if already run
        boundary = self._boundary = _Boundary(first_epoch - 1, order, result, start, running=True)

        # Overflow in a diverging run is expected and handled by the finiteness check below.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            for epoch in range(first_epoch, self.epochs + 1):
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
                boundary.epoch, boundary.next_order = epoch, None if last else order
                if self.callback is not None and self.callback(record):
                    result.outcome = Outcome.STOPPED
                    result.reason = f"stopped by callback after epoch {epoch}"
                    break
        result.seconds = time.perf_counter() - start
        return result
