"""Checkpoints: a network, its optimizer and a trainer's position, as bytes that never unpickle.

The bytes are a standard ``.npz`` archive (readable with ``np.load(..., allow_pickle=False)``):
one ``header`` member, the UTF-8 bytes of a JSON object as a ``uint8`` array, and a few flat
arrays, all stored uncompressed::

    header               {"format": "hpo-engine-checkpoint", "format_version": 1, ...}
    net.weights          W1, W2, ... end to end (the network's own flat buffer of weights)
    net.others           b1, gamma1, beta1, b2, ... (its flat buffer of the other parameters)
    net.running          running_mean1, running_var1, ... (with batch normalization only)
    opt.weights.0, ...   the optimizer's state arrays, by parameter name and slot
    trainer.next_order   the next epoch's shuffled order, when it was already drawn

The header's ``layout`` names the arrays each ``net.*`` member holds, in order, with their
shapes; it also holds the format version, the engine and NumPy versions that wrote it, the
architecture (enough to rebuild the network), the dropout generator's state, the optimizer's
kind, hyperparameters and counters, the trainer's position (the epoch reached, the steps and
seconds so far, every :class:`~engine.EpochRecord`, the shuffling generator's state and the
trainer's settings) and, when known, the data's :class:`~engine.Preprocessing` (the feature
normalization the network was trained with and its class labels, so a prediction needs nothing
else). Few members keep writing and reading cheap (a member costs tens of
microseconds whatever its size). Reading checks every member's shape and dtype against the header
before it reads the member's data, so a foreign archive costs no more memory than its own length.

Writing the same checkpoint twice gives the same bytes (members carry a fixed timestamp).

This module holds what writing (:meth:`Checkpoint.to_bytes <engine.Checkpoint.to_bytes>`) and
reading (:mod:`engine._checkpoint_io`) share: the format's constants, the optimizer's and the
trainer's states, the checks of arrays against an architecture, and generator states as JSON.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from ._errors import CheckpointError
from ._net import MultiLayerNet
from ._optimizers import OPTIMIZERS, Optimizer
from ._records import EpochRecord

__all__ = [
    "BIT_GENERATORS",
    "FORMAT",
    "FORMAT_VERSION",
    "HEADER",
    "MAX_HEADER_BYTES",
    "SETTINGS",
    "SETTINGS_MATCHED",
    "Array",
    "OptimizerState",
    "TrainerPosition",
    "check_arrays",
    "check_rng_state",
    "check_same",
    "index_dtype",
    "layer_sizes",
    "load_rng_state",
    "member_layout",
    "optimizer_kind",
    "record_to_json",
    "rng_from_json",
    "rng_state",
    "rng_to_json",
    "write_member",
]

Array = NDArray[np.floating]

FORMAT = "hpo-engine-checkpoint"
FORMAT_VERSION = 1
"""The version of the byte format this engine writes, and the only one it reads."""

HEADER = "header"
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest a zip entry can carry: fixed, so bytes are stable
MAX_HEADER_BYTES = 1 << 26
# Bit generators whose state a checkpoint may restore (NumPy's own; their states are plain data).
BIT_GENERATORS: dict[str, Callable[[], np.random.BitGenerator]] = {
    "PCG64": np.random.PCG64,
    "PCG64DXSM": np.random.PCG64DXSM,
    "MT19937": np.random.MT19937,
    "Philox": np.random.Philox,
    "SFC64": np.random.SFC64,
}
# The trainer settings a checkpoint records; those in SETTINGS_MATCHED must equal the resuming
# trainer's, since the saved order and step count only make sense for the same data and batches.
SETTINGS = ("epochs", "batch_size", "eval_interval", "eval_batch_size", "n_train", "n_val", "features")
SETTINGS_MATCHED = ("batch_size", "n_train", "n_val", "features")


@dataclass(frozen=True, slots=True, eq=False)
class OptimizerState:
    """An optimizer's kind, hyperparameters and what it has accumulated.

    Attributes:
        kind: Its name in :data:`~engine.OPTIMIZERS` (``"adam"``).
        hyperparameters: Its constructor's arguments (``{"lr": 0.001, "beta1": 0.9, ...}``).
        counters: Its integer counters (Adam's step count ``t``).
        slots: The state arrays of each parameter it has stepped, by the parameter's name in
            :meth:`~engine.MultiLayerNet.named_parameters` (a trainer steps ``weights`` and
            ``others``).
    """

    kind: str
    hyperparameters: dict[str, float]
    counters: dict[str, int]
    slots: dict[str, tuple[Array, ...]]

    @classmethod
    def of(cls, optimizer: Optimizer, net: MultiLayerNet) -> OptimizerState:
        """A copy of the state of ``optimizer``, which steps parameters of ``net``.

        Raises:
            CheckpointError: The optimizer is not one of :data:`~engine.OPTIMIZERS`, or it holds
                state for a parameter that is not ``net``'s.
        """
        names = {id(p): name for name, p in net.named_parameters().items()}
        counters, slots = optimizer.export_state()
        foreign = [p for p in slots if id(p) not in names]
        if foreign:
            raise CheckpointError(f"the optimizer holds state for parameters not of this network: {foreign}")
        return cls(
            kind=optimizer_kind(optimizer),
            hyperparameters=optimizer.hyperparameters(),
            counters=counters,
            slots={names[id(p)]: arrays for p, arrays in slots.items()},
        )

    def header(self) -> dict[str, Any]:
        """Everything but the arrays, as the JSON data of a checkpoint's header."""
        fields = {"kind": self.kind, "hyperparameters": self.hyperparameters, "counters": self.counters}
        return {**fields, "parameters": sorted(self.slots)}


@dataclass(frozen=True, slots=True, eq=False)
class TrainerPosition:
    """Where a :class:`~engine.Trainer` stood at an epoch boundary.

    Attributes:
        epoch: Epochs completed (0: before the first).
        steps: Training steps taken so far.
        seconds: Training seconds so far (a resumed run's time limit counts them).
        history: The record of every epoch so far, ``history[i].epoch == i + 1``.
        shuffle_rng: The state (``bit_generator.state``) of the shuffling generator.
        next_order: The next epoch's order of the training rows if it was already drawn (the
            trainer draws it before the evaluation of the epoch that ends), else None.
        settings: The trainer's ``epochs``, ``batch_size``, ``eval_interval`` and
            ``eval_batch_size``, and the data's ``n_train``, ``n_val`` rows and ``features``.
    """

    epoch: int
    steps: int
    seconds: float
    history: tuple[EpochRecord, ...]
    shuffle_rng: dict[str, Any]
    next_order: NDArray[np.intp] | None
    settings: dict[str, int]

    def check_fits(self, settings: Mapping[str, int]) -> None:
        """Raise :class:`~engine.CheckpointError` unless a trainer of ``settings`` (the keys of
        :attr:`settings`) can continue from this position.

        The batch size and the data's shape must be the same, and the trainer must run at least
        :attr:`epoch` epochs (more continue the run). The evaluation interval and batch size may
        differ; the continuation is then the uninterrupted run's only where they agree.
        """
        saved = {k: self.settings[k] for k in SETTINGS_MATCHED}
        check_same("trainer settings", saved, {k: settings[k] for k in SETTINGS_MATCHED})
        if self.epoch > settings["epochs"]:
            raise CheckpointError(
                f"checkpoint is at epoch {self.epoch}, past the trainer's {settings['epochs']} epochs"
            )
        check_rng_state(self.shuffle_rng)
        if self.next_order is not None and self.next_order.shape != (settings["n_train"],):
            raise CheckpointError("checkpoint next_order does not fit the training rows")

    def header(self) -> dict[str, Any]:
        """Everything but the next order's array, as the JSON data of a checkpoint's header."""
        plain = {name: getattr(self, name) for name in ("epoch", "steps", "seconds", "settings")}
        return {
            **plain,
            "history": [record_to_json(r) for r in self.history],
            "shuffle_rng": rng_to_json(self.shuffle_rng),
            "next_order": self.next_order is not None,
        }


# ---------------------------------------------------------------------------------------------
# Checks shared by restoring and reading


def check_same(what: str, saved: Any, target: Any) -> None:
    if saved != target:
        if isinstance(saved, dict) and isinstance(target, dict):
            keys = sorted(k for k in saved.keys() | target.keys() if saved.get(k) != target.get(k))
            diff = ", ".join(f"{k}: {saved.get(k)!r} vs {target.get(k)!r}" for k in keys)
        else:
            diff = f"{saved!r} vs {target!r}"
        raise CheckpointError(f"checkpoint {what} differs from the target's ({diff})")


def check_arrays(
    arrays: Mapping[str, NDArray[Any]], shapes: Mapping[str, tuple[int, ...]], dtype: np.dtype[Any], what: str
) -> None:
    missing, extra = sorted(shapes.keys() - arrays.keys()), sorted(arrays.keys() - shapes.keys())
    if missing or extra:
        raise CheckpointError(f"{what} does not fit: missing {missing}, unexpected {extra}")
    for name, shape in shapes.items():
        a = arrays[name]
        if a.shape != shape or a.dtype != dtype:
            raise CheckpointError(f"{what} {name} is {a.dtype}{list(a.shape)}, expected {dtype}{list(shape)}")


def layer_sizes(network: Mapping[str, Any]) -> list[int]:
    return [network["input_size"], *network["hidden_sizes"], network["output_size"]]


def member_layout(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, list[tuple[str, tuple[int, ...]]]]:
    """The network's arrays by the flat member that stores them: ``weights`` (``W1``, ``W2``, ...),
    ``others`` (biases and batch-norm scales and shifts) and ``running`` (running statistics),
    each in the order of :func:`~engine.state_shapes` (that of the network's flat buffers)."""
    groups: dict[str, list[tuple[str, tuple[int, ...]]]] = {"weights": [], "others": [], "running": []}
    for name, shape in shapes.items():
        group = "weights" if name.startswith("W") else "running" if name.startswith("running_") else "others"
        groups[group].append((name, shape))
    return {group: entries for group, entries in groups.items() if entries}


def optimizer_kind(optimizer: Optimizer) -> str:
    for kind, cls in OPTIMIZERS.items():
        if type(optimizer) is cls:
            return kind
    name = type(optimizer).__name__
    raise CheckpointError(f"cannot checkpoint a {name}: not one of {', '.join(OPTIMIZERS)}")


def index_dtype(n: int) -> np.dtype[np.unsignedinteger[Any]]:
    """The narrowest unsigned dtype holding ``0..n-1`` (a shuffled order stored compactly)."""
    for dt in (np.uint16, np.uint32):
        if n <= np.iinfo(dt).max + 1:
            return np.dtype(dt)
    return np.dtype(np.uint64)


# ---------------------------------------------------------------------------------------------
# Generator states


def rng_state(gen: np.random.Generator) -> dict[str, Any]:
    return cast("dict[str, Any]", gen.bit_generator.state)


def check_rng_state(state: Mapping[str, Any]) -> None:
    """Raise unless ``state`` is the state of one of NumPy's bit generators (it is tried on one)."""
    name = state.get("bit_generator") if isinstance(state, Mapping) else None
    factory = BIT_GENERATORS.get(name) if isinstance(name, str) else None
    if factory is None:
        raise CheckpointError(f"unsupported bit generator {name!r} (one of {', '.join(BIT_GENERATORS)})")
    try:
        factory().state = dict(state)
    except (ValueError, TypeError, KeyError, OverflowError) as exc:
        raise CheckpointError(f"invalid {name} generator state: {exc}") from None


def load_rng_state(gen: np.random.Generator, state: Mapping[str, Any]) -> np.random.Generator:
    """``gen`` set to ``state`` if of the same kind, else a new generator of the state's kind.

    ``state`` must have passed :func:`check_rng_state`.
    """
    name = state["bit_generator"]
    if type(gen.bit_generator).__name__ != name:
        gen = np.random.Generator(BIT_GENERATORS[name]())
    gen.bit_generator.state = dict(state)
    return gen


def rng_to_json(value: Any) -> Any:
    """A generator state as JSON data: arrays (MT19937's key, Philox's counter) become tagged lists."""
    if isinstance(value, Mapping):
        return {str(k): rng_to_json(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.dtype.name, "data": value.tolist()}
    if isinstance(value, np.integer):
        return int(value)
    return value


def rng_from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__ndarray__", "data"}:
            dtype = value["__ndarray__"]
            if dtype not in ("uint32", "uint64") or not isinstance(value["data"], list):
                raise CheckpointError(f"invalid array in a generator state: {dtype!r}")
            try:
                return np.array(value["data"], dtype=dtype)
            except (ValueError, TypeError, OverflowError) as exc:
                raise CheckpointError(f"invalid array in a generator state: {exc}") from None
        return {k: rng_from_json(v) for k, v in value.items()}
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise CheckpointError(f"invalid value in a generator state: {value!r}")
    return value


# ---------------------------------------------------------------------------------------------
# Writing


def write_member(zf: zipfile.ZipFile, name: str, array: NDArray[Any]) -> None:
    info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_DATE)
    info.compress_type = zipfile.ZIP_STORED
    info.create_system = 3  # the same bytes on every platform
    array = np.ascontiguousarray(array)
    with zf.open(info, "w", force_zip64=array.nbytes + 4096 >= zipfile.ZIP64_LIMIT) as f:
        np.lib.format.write_array(f, array, allow_pickle=False)


def record_to_json(r: EpochRecord) -> dict[str, Any]:
    # Every float exactly (JSON keeps a float's repr); seconds unrounded, unlike as_dict().
    return {
        "epoch": r.epoch,
        "train_loss": r.train_loss,
        "train_acc": r.train_acc,
        "val_loss": r.val_loss,
        "val_acc": r.val_acc,
        "seconds": r.seconds,
    }
