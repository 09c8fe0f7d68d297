"""Train one network from a spec: the unit of work of every trial."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import engine

from .spec import DatasetSpec, ModelSpec, TrainingSpec, TrainSpec

__all__ = [
    "TrainedNetwork",
    "build_network",
    "format_bytes",
    "load_data",
    "memory_limit",
    "train_memory",
    "train_network",
]


def load_data(spec: DatasetSpec, dtype: str = "float32") -> engine.Dataset:
    """The dataset a spec describes, split by its own seed (the same split for every trial)."""
    return engine.load_dataset(
        spec.kind,
        path=spec.path,
        subset=spec.subset,
        val_fraction=spec.val_fraction,
        test_fraction=spec.test_fraction,
        seed=spec.seed,
        normalize=spec.normalize,
        dtype=np.dtype(dtype),
        label_column=spec.label_column,
    )


def memory_limit() -> int:
    """Bytes of memory this process may use: the machine's physical memory, or its cgroup's limit
    when that is lower (a container)."""
    limit = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        text = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        return int(limit)
    return int(limit) if text == "max" else min(int(limit), int(text))


def train_memory(model: ModelSpec, training: TrainingSpec, data: engine.Dataset) -> int:
    """A lower bound of the bytes training this network on ``data`` needs (its data aside)."""
    eval_rows = min(2048, max(data.train.x.shape[0], data.val.x.shape[0], 1))
    return engine.estimate_memory(
        data.input_size,
        model.hidden_sizes,
        data.num_classes,
        batch_size=min(training.batch_size, max(data.train.x.shape[0], 1)),
        optimizer=training.optimizer,
        dtype=training.dtype,
        batchnorm=model.batchnorm,
        eval_batch_size=eval_rows,
    )


def format_bytes(n: float) -> str:
    """``n`` bytes for people: ``1.2 GB``."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def build_network(
    model: ModelSpec, training: TrainingSpec, data: engine.Dataset, rng: np.random.Generator
) -> engine.MultiLayerNet:
    """The network a spec describes, sized for ``data``."""
    return engine.MultiLayerNet(
        data.input_size,
        model.hidden_sizes,
        data.num_classes,
        activation=model.activation,
        weight_init=model.weight_init,
        init_std=model.init_std,
        batchnorm=model.batchnorm,
        dropout=model.dropout,
        weight_decay=model.weight_decay,
        loss=model.loss,
        dtype=np.dtype(training.dtype),
        rng=rng,
    )


@dataclass
class TrainedNetwork:
    """A training run's network, data and result."""

    net: engine.MultiLayerNet
    data: engine.Dataset
    result: engine.TrainResult

    def test_accuracy(self) -> float | None:
        """Accuracy on the held-out test split (None without one, or after divergence)."""
        if self.result.outcome is engine.Outcome.DIVERGED or self.data.test.x.shape[0] == 0:
            return None
        return self.net.accuracy(self.data.test.x, self.data.test.t)


def train_network(
    spec: TrainSpec,
    *,
    callback: engine.EpochCallback | None = None,
    time_limit: float | None = None,
    data: engine.Dataset | None = None,
) -> TrainedNetwork:
    """Train the network ``spec`` describes with the seed ``spec.seed``.

    The seed fans out into independent streams for the weights (and dropout masks) and for the
    shuffling, so the same spec trains bit-identically.
    """
    training = spec.training
    data = data if data is not None else load_data(spec.dataset, training.dtype)
    net_rng, shuffle_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(spec.seed).spawn(2))
    net = build_network(spec.model, training, data, net_rng)
    optimizer = engine.make_optimizer(training.optimizer, training.lr, **training.optimizer_options())
    trainer = engine.Trainer(
        net,
        optimizer,
        data.train.x,
        data.train.t,
        data.val.x,
        data.val.t,
        epochs=training.epochs,
        batch_size=training.batch_size,
        rng=shuffle_rng,
        eval_interval=training.eval_interval,
        callback=callback,
        time_limit=time_limit,
    )
    return TrainedNetwork(net, data, trainer.fit())
