"""Train one network from a spec: the unit of work of every trial."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import engine

from ..spec import CategoricalParameter, DatasetSpec, ModelSpec, SpecFile, StudySpec, TrainingSpec, TrainSpec

__all__ = [
    "TrainedNetwork",
    "build_network",
    "build_trainer",
    "check_study_data",
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


def check_study_data(study: SpecFile[StudySpec]) -> engine.Dataset:
    """Load a study's data and check that its largest network fits in this machine's memory.

    What ``hpo validate`` and a local ``hpo submit`` check before anything is written: a study
    whose data cannot be loaded would otherwise be left half-made under its name.

    Returns:
        The data, split as every trial will see it.

    Raises:
        SpecError: The data cannot be loaded (naming ``dataset.path`` or the field at fault, at its
            line:column in the file), or the network cannot fit.
    """
    spec = study.spec
    try:
        data = load_data(spec.dataset, spec.training.dtype)
    except engine.DatasetError as exc:
        field = "training.dtype" if exc.field == "dtype" else f"dataset.{exc.field}"
        raise study.error(field, str(exc)) from None
    field, trial = _largest_trial(study.spec)
    needed, limit = train_memory(trial.model, trial.training, data), memory_limit()
    if needed > limit:
        raise study.error(
            field,
            f"training this network needs at least {format_bytes(needed)} (parameters, gradients, "
            f"optimizer state and activations), more than this machine's {format_bytes(limit)}",
        )
    return data


# The searched fields that make a network's training need more memory, and the value of each
# that needs the most (numeric fields: the range's high end).
_MEMORY_FIELDS: dict[tuple[str, str], Callable[[list[Any]], Any]] = {
    ("model", "width"): max,
    ("model", "depth"): max,
    ("model", "batchnorm"): max,  # True > False
    ("training", "batch_size"): max,
    ("training", "dtype"): lambda choices: "float64" if "float64" in choices else choices[0],
    ("training", "optimizer"): lambda choices: max(
        choices, key=lambda name: engine.OPTIMIZERS[str(name)].state_slots
    ),
}


def _largest_trial(spec: StudySpec) -> tuple[str, TrainSpec]:
    """The trial of the first stage that needs the most memory, and the field to blame for it."""
    params: dict[str, Any] = {}
    field = "model.hidden_sizes"
    for name, target in spec.parameter_targets().items():
        param = spec.search.parameters[name]
        values = list(param.choices) if isinstance(param, CategoricalParameter) else [param.low, param.high]
        pick = _MEMORY_FIELDS.get(target)
        params[name] = values[0] if pick is None else pick(values)
        if target in (("model", "width"), ("model", "depth")):
            field = f"search.parameters.{name}"
    return field, spec.trial_spec(params, 0)


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


def build_trainer(
    spec: TrainSpec,
    data: engine.Dataset,
    *,
    callback: engine.EpochCallback | None = None,
    time_limit: float | None = None,
    resume_from: engine.Checkpoint | None = None,
) -> engine.Trainer:
    """The trainer of the network ``spec`` describes, with the seed ``spec.seed``, on ``data``.

    The seed fans out into independent streams for the weights (and dropout masks) and for the
    shuffling, so the same spec trains bit-identically; from ``resume_from`` (a checkpoint of the
    same spec's run) it continues that run exactly.

    Raises:
        CheckpointError: ``resume_from`` is not a checkpoint of this spec's run.
    """
    training = spec.training
    net_rng, shuffle_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(spec.seed).spawn(2))
    net = build_network(spec.model, training, data, net_rng)
    optimizer = engine.make_optimizer(training.optimizer, training.lr, **training.optimizer_options())
    return engine.Trainer(
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
        resume_from=resume_from,
    )


def train_network(
    spec: TrainSpec,
    *,
    callback: engine.EpochCallback | None = None,
    time_limit: float | None = None,
    data: engine.Dataset | None = None,
) -> TrainedNetwork:
    """Train the network ``spec`` describes with the seed ``spec.seed`` (see :func:`build_trainer`)."""
    data = data if data is not None else load_data(spec.dataset, spec.training.dtype)
    trainer = build_trainer(spec, data, callback=callback, time_limit=time_limit)
    return TrainedNetwork(trainer.net, data, trainer.fit())
