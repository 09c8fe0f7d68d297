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
"""

from __future__ import annotations

import ast
import dataclasses
import io
import json
import math
import re
import struct
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from ._errors import CheckpointError, ConfigError
from ._net import MultiLayerNet, state_shapes
from ._optimizers import OPTIMIZERS, Optimizer
from ._parameter import Parameter
from ._preprocessing import Preprocessing
from ._records import EpochRecord
from ._version import __version__

__all__ = [
    "FORMAT_VERSION",
    "Checkpoint",
    "OptimizerState",
    "TrainerPosition",
    "load_model",
    "save_model",
]

Array = NDArray[np.floating]

FORMAT = "hpo-engine-checkpoint"
FORMAT_VERSION = 1
"""The version of the byte format this engine writes, and the only one it reads."""

_HEADER = "header"
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest a zip entry can carry: fixed, so bytes are stable
_MAX_HEADER_BYTES = 1 << 26
# Bit generators whose state a checkpoint may restore (NumPy's own; their states are plain data).
_BIT_GENERATORS: dict[str, Callable[[], np.random.BitGenerator]] = {
    "PCG64": np.random.PCG64,
    "PCG64DXSM": np.random.PCG64DXSM,
    "MT19937": np.random.MT19937,
    "Philox": np.random.Philox,
    "SFC64": np.random.SFC64,
}
# The trainer settings a checkpoint records; those in _SETTINGS_MATCHED must equal the resuming
# trainer's, since the saved order and step count only make sense for the same data and batches.
_SETTINGS = ("epochs", "batch_size", "eval_interval", "eval_batch_size", "n_train", "n_val", "features")
_SETTINGS_MATCHED = ("batch_size", "n_train", "n_val", "features")


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
            kind=_optimizer_kind(optimizer),
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
        saved = {k: self.settings[k] for k in _SETTINGS_MATCHED}
        _check_same("trainer settings", saved, {k: settings[k] for k in _SETTINGS_MATCHED})
        if self.epoch > settings["epochs"]:
            raise CheckpointError(
                f"checkpoint is at epoch {self.epoch}, past the trainer's {settings['epochs']} epochs"
            )
        _check_rng_state(self.shuffle_rng)
        if self.next_order is not None and self.next_order.shape != (settings["n_train"],):
            raise CheckpointError("checkpoint next_order does not fit the training rows")

    def header(self) -> dict[str, Any]:
        """Everything but the next order's array, as the JSON data of a checkpoint's header."""
        plain = {name: getattr(self, name) for name in ("epoch", "steps", "seconds", "settings")}
        return {
            **plain,
            "history": [_record_to_json(r) for r in self.history],
            "shuffle_rng": _rng_to_json(self.shuffle_rng),
            "next_order": self.next_order is not None,
        }


@dataclass(frozen=True, slots=True, eq=False)
class Checkpoint:
    """A network's architecture and arrays, optionally with its optimizer and trainer position.

    :func:`save_model` writes one of a network alone; :meth:`Trainer.checkpoint
    <engine.Trainer.checkpoint>` one of a whole training run, which :meth:`Trainer.resume
    <engine.Trainer.resume>` continues exactly (the resumed curves and weights are bit-identical
    to an uninterrupted run's). :meth:`to_bytes` and :meth:`from_bytes` convert it to and from
    bytes that never unpickle (see the module's description of the format).

    Attributes:
        network: The architecture (:attr:`MultiLayerNet.architecture
            <engine.MultiLayerNet.architecture>`).
        arrays: The network's parameters and running statistics (:meth:`MultiLayerNet.state
            <engine.MultiLayerNet.state>`).
        dropout_rng: The state of the network's dropout generator.
        optimizer: The optimizer's state, or None for a network alone.
        trainer: The trainer's position, or None for a network alone.
        engine_version: The version of the engine that took it.
        preprocessing: How the network's features were normalized and what its classes are
            called (see :class:`~engine.Preprocessing`), when the one who saved it knew.
    """

    network: dict[str, Any]
    arrays: dict[str, Array]
    dropout_rng: dict[str, Any]
    optimizer: OptimizerState | None = None
    trainer: TrainerPosition | None = None
    engine_version: str = __version__
    preprocessing: Preprocessing | None = None

    @classmethod
    def of_network(cls, net: MultiLayerNet) -> Checkpoint:
        """A checkpoint of ``net`` alone (copies of its arrays), e.g. to predict with later."""
        return cls(net.architecture, net.state(), _rng_state(net.dropout_rng))

    @property
    def epoch(self) -> int | None:
        """The epochs the training run had completed, or None for a network alone."""
        return None if self.trainer is None else self.trainer.epoch

    # ------------------------------------------------------------------------------------
    # Restoring

    def build_network(self) -> MultiLayerNet:
        """A new network of the checkpoint's architecture, arrays and dropout state.

        Raises:
            CheckpointError: The architecture is invalid, or the arrays do not fit it.
        """
        try:
            net = MultiLayerNet(**self.network)
        except (ConfigError, TypeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint architecture is invalid: {exc}") from None
        self.restore_network(net)
        return net

    def restore_network(self, net: MultiLayerNet) -> None:
        """Load the arrays and the dropout generator's state into ``net`` (in place).

        Raises:
            CheckpointError: ``net`` has another architecture; it is then unchanged.
        """
        self.check_network(net)
        self._apply_network(net)

    def check_network(self, net: MultiLayerNet) -> None:
        """Raise :class:`~engine.CheckpointError` unless the checkpoint can restore ``net``."""
        _check_same("architecture", self.network, net.architecture)
        shapes, _ = state_shapes(net.sizes, batchnorm=bool(self.network["batchnorm"]))
        _check_arrays(self.arrays, shapes, net.dtype, "network state")
        _check_rng_state(self.dropout_rng)

    def _apply_network(self, net: MultiLayerNet) -> None:
        net.load_state(self.arrays)
        net.set_dropout_rng(load_rng_state(net.dropout_rng, self.dropout_rng))

    def build_optimizer(self, net: MultiLayerNet) -> Optimizer:
        """A new optimizer of the checkpoint's kind and hyperparameters, with its state restored
        for the parameters of ``net`` (a network of the checkpoint's architecture).

        Raises:
            CheckpointError: There is no optimizer in the checkpoint, its hyperparameters are
                invalid, or ``net`` has another architecture.
        """
        state = self._optimizer_state()
        try:
            optimizer = OPTIMIZERS[state.kind](**state.hyperparameters)
        except (ConfigError, TypeError) as exc:
            raise CheckpointError(f"checkpoint optimizer is invalid: {exc}") from None
        self.restore_optimizer(optimizer, net)
        return optimizer

    def restore_optimizer(self, optimizer: Optimizer, net: MultiLayerNet) -> None:
        """Replace the state of ``optimizer``, which steps parameters of ``net``.

        Raises:
            CheckpointError: There is no optimizer in the checkpoint, ``optimizer`` is of another
                kind or has other hyperparameters, or ``net`` has another architecture; nothing
                is changed then.
        """
        self.check_optimizer(optimizer, net)
        self._apply_optimizer(optimizer, net)

    def check_optimizer(self, optimizer: Optimizer, net: MultiLayerNet) -> None:
        """Raise :class:`~engine.CheckpointError` unless the checkpoint can restore ``optimizer``."""
        state = self._optimizer_state()
        _check_same("optimizer", state.kind, _optimizer_kind(optimizer))
        _check_same("optimizer hyperparameters", state.hyperparameters, optimizer.hyperparameters())
        _check_same("architecture", self.network, net.architecture)
        if sorted(state.counters) != sorted(optimizer.counter_names):
            raise CheckpointError(f"optimizer counters {sorted(state.counters)} do not fit {state.kind}")
        params = net.named_parameters()
        unknown = sorted(state.slots.keys() - params.keys())
        if unknown:
            raise CheckpointError(f"optimizer state for unknown parameters {unknown}")
        for name, arrays in state.slots.items():
            shape = params[name].data.shape
            fits = all(a.shape == shape and a.dtype == net.dtype for a in arrays)
            if len(arrays) != optimizer.state_slots or not fits:
                found = ", ".join(f"{a.dtype}{list(a.shape)}" for a in arrays)
                raise CheckpointError(
                    f"optimizer state of {name} is [{found}], expected {optimizer.state_slots} x "
                    f"{net.dtype}{list(shape)}"
                )

    def _apply_optimizer(self, optimizer: Optimizer, net: MultiLayerNet) -> None:
        state = self._optimizer_state()
        params = net.named_parameters()
        slots: dict[Parameter, tuple[Array, ...]] = {params[name]: a for name, a in state.slots.items()}
        optimizer.import_state(state.counters, slots)

    def _optimizer_state(self) -> OptimizerState:
        if self.optimizer is None:
            raise CheckpointError("this checkpoint holds a network alone, no optimizer (see save_model)")
        return self.optimizer

    # ------------------------------------------------------------------------------------
    # Bytes

    def to_bytes(self) -> bytes:
        """The checkpoint as the bytes of an ``.npz`` archive (see the module's description)."""
        header: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "engine_version": self.engine_version,
            "numpy_version": np.__version__,
            "network": self.network,
            "dropout_rng": _rng_to_json(self.dropout_rng),
            "optimizer": None,
            "trainer": None,
            "preprocessing": None if self.preprocessing is None else self.preprocessing.header(),
        }
        dtype = np.dtype(self.network["dtype"])
        shapes, _ = state_shapes(_sizes(self.network), batchnorm=bool(self.network["batchnorm"]))
        _check_arrays(self.arrays, shapes, dtype, "network state")
        layout = _layout(shapes)
        header["layout"] = {
            group: [[name, list(shape)] for name, shape in entries] for group, entries in layout.items()
        }
        members: dict[str, NDArray[Any]] = {
            f"net.{group}": np.concatenate([self.arrays[name].ravel() for name, _ in entries])
            for group, entries in layout.items()
        }
        if self.optimizer is not None:
            header["optimizer"] = self.optimizer.header()
            for name, arrays in self.optimizer.slots.items():
                members.update({f"opt.{name}.{j}": a for j, a in enumerate(arrays)})
        if self.trainer is not None:
            header["trainer"] = self.trainer.header()
            order = self.trainer.next_order
            if order is not None:
                members["trainer.next_order"] = order.astype(_index_dtype(order.size))
        text = json.dumps(header, sort_keys=True, separators=(",", ":"), allow_nan=True)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            _write_member(zf, _HEADER, np.frombuffer(text.encode(), dtype=np.uint8))
            for name in sorted(members):
                _write_member(zf, name, members[name])
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> Checkpoint:
        """Read a checkpoint from the bytes :meth:`to_bytes` wrote (nothing is unpickled).

        Raises:
            CheckpointError: The bytes are not an engine checkpoint (foreign, truncated or
                corrupted; a member that is pickled, compressed, missing, unexpected or of
                another shape or dtype than the header declares), or one of another format
                version.
            TypeError: ``data`` is not bytes-like.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"a checkpoint is read from bytes, got {type(data).__name__}")
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                return _read_checkpoint(zf)
        except CheckpointError:
            raise
        # What zipfile, struct, json and NumPy raise on foreign bytes (RuntimeError: an
        # encrypted member; RecursionError: deeply nested JSON).
        except (
            zipfile.BadZipFile,
            zipfile.LargeZipFile,
            struct.error,
            OSError,
            EOFError,
            ValueError,
            KeyError,
            TypeError,
            OverflowError,
            RuntimeError,
        ) as exc:
            raise CheckpointError(f"not an engine checkpoint: {type(exc).__name__}: {exc}") from None


def save_model(net: MultiLayerNet, preprocessing: Preprocessing | None = None) -> bytes:
    """The bytes of a checkpoint of ``net`` alone (see :class:`Checkpoint`), with the
    normalization and labels of its data when given; :func:`load_model` reads them back."""
    return dataclasses.replace(Checkpoint.of_network(net), preprocessing=preprocessing).to_bytes()


def load_model(data: bytes | bytearray | memoryview) -> MultiLayerNet:
    """The network of a checkpoint's bytes (from :func:`save_model` or a training checkpoint),
    ready to predict with (:meth:`~engine.MultiLayerNet.predict_proba`) on features normalized as
    its training data were: ``Checkpoint.from_bytes(data).preprocessing.apply(x)`` when the
    checkpoint holds its :class:`~engine.Preprocessing`.

    Raises:
        CheckpointError: The bytes are not a valid engine checkpoint.
    """
    return Checkpoint.from_bytes(data).build_network()


# ---------------------------------------------------------------------------------------------
# Checks shared by restoring and reading


def _check_same(what: str, saved: Any, target: Any) -> None:
    if saved != target:
        if isinstance(saved, dict) and isinstance(target, dict):
            keys = sorted(k for k in saved.keys() | target.keys() if saved.get(k) != target.get(k))
            diff = ", ".join(f"{k}: {saved.get(k)!r} vs {target.get(k)!r}" for k in keys)
        else:
            diff = f"{saved!r} vs {target!r}"
        raise CheckpointError(f"checkpoint {what} differs from the target's ({diff})")


def _check_arrays(
    arrays: Mapping[str, NDArray[Any]], shapes: Mapping[str, tuple[int, ...]], dtype: np.dtype[Any], what: str
) -> None:
    missing, extra = sorted(shapes.keys() - arrays.keys()), sorted(arrays.keys() - shapes.keys())
    if missing or extra:
        raise CheckpointError(f"{what} does not fit: missing {missing}, unexpected {extra}")
    for name, shape in shapes.items():
        a = arrays[name]
        if a.shape != shape or a.dtype != dtype:
            raise CheckpointError(f"{what} {name} is {a.dtype}{list(a.shape)}, expected {dtype}{list(shape)}")


def _sizes(network: Mapping[str, Any]) -> list[int]:
    return [network["input_size"], *network["hidden_sizes"], network["output_size"]]


def _layout(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, list[tuple[str, tuple[int, ...]]]]:
    """The network's arrays by the flat member that stores them: ``weights`` (``W1``, ``W2``, ...),
    ``others`` (biases and batch-norm scales and shifts) and ``running`` (running statistics),
    each in the order of :func:`~engine.state_shapes` (that of the network's flat buffers)."""
    groups: dict[str, list[tuple[str, tuple[int, ...]]]] = {"weights": [], "others": [], "running": []}
    for name, shape in shapes.items():
        group = "weights" if name.startswith("W") else "running" if name.startswith("running_") else "others"
        groups[group].append((name, shape))
    return {group: entries for group, entries in groups.items() if entries}


def _optimizer_kind(optimizer: Optimizer) -> str:
    for kind, cls in OPTIMIZERS.items():
        if type(optimizer) is cls:
            return kind
    name = type(optimizer).__name__
    raise CheckpointError(f"cannot checkpoint a {name}: not one of {', '.join(OPTIMIZERS)}")


def _index_dtype(n: int) -> np.dtype[np.unsignedinteger[Any]]:
    """The narrowest unsigned dtype holding ``0..n-1`` (a shuffled order stored compactly)."""
    for dt in (np.uint16, np.uint32):
        if n <= np.iinfo(dt).max + 1:
            return np.dtype(dt)
    return np.dtype(np.uint64)


# ---------------------------------------------------------------------------------------------
# Generator states


def _rng_state(gen: np.random.Generator) -> dict[str, Any]:
    return cast("dict[str, Any]", gen.bit_generator.state)


def _check_rng_state(state: Mapping[str, Any]) -> None:
    """Raise unless ``state`` is the state of one of NumPy's bit generators (it is tried on one)."""
    name = state.get("bit_generator") if isinstance(state, Mapping) else None
    factory = _BIT_GENERATORS.get(name) if isinstance(name, str) else None
    if factory is None:
        raise CheckpointError(f"unsupported bit generator {name!r} (one of {', '.join(_BIT_GENERATORS)})")
    try:
        factory().state = dict(state)
    except (ValueError, TypeError, KeyError, OverflowError) as exc:
        raise CheckpointError(f"invalid {name} generator state: {exc}") from None


def load_rng_state(gen: np.random.Generator, state: Mapping[str, Any]) -> np.random.Generator:
    """``gen`` set to ``state`` if of the same kind, else a new generator of the state's kind.

    ``state`` must have passed :func:`_check_rng_state`.
    """
    name = state["bit_generator"]
    if type(gen.bit_generator).__name__ != name:
        gen = np.random.Generator(_BIT_GENERATORS[name]())
    gen.bit_generator.state = dict(state)
    return gen


def _rng_to_json(value: Any) -> Any:
    """A generator state as JSON data: arrays (MT19937's key, Philox's counter) become tagged lists."""
    if isinstance(value, Mapping):
        return {str(k): _rng_to_json(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.dtype.name, "data": value.tolist()}
    if isinstance(value, np.integer):
        return int(value)
    return value


def _rng_from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__ndarray__", "data"}:
            dtype = value["__ndarray__"]
            if dtype not in ("uint32", "uint64") or not isinstance(value["data"], list):
                raise CheckpointError(f"invalid array in a generator state: {dtype!r}")
            try:
                return np.array(value["data"], dtype=dtype)
            except (ValueError, TypeError, OverflowError) as exc:
                raise CheckpointError(f"invalid array in a generator state: {exc}") from None
        return {k: _rng_from_json(v) for k, v in value.items()}
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise CheckpointError(f"invalid value in a generator state: {value!r}")
    return value


# ---------------------------------------------------------------------------------------------
# Writing


def _write_member(zf: zipfile.ZipFile, name: str, array: NDArray[Any]) -> None:
    info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
    info.compress_type = zipfile.ZIP_STORED
    info.create_system = 3  # the same bytes on every platform
    array = np.ascontiguousarray(array)
    with zf.open(info, "w", force_zip64=array.nbytes + 4096 >= zipfile.ZIP64_LIMIT) as f:
        np.lib.format.write_array(f, array, allow_pickle=False)


def _record_to_json(r: EpochRecord) -> dict[str, Any]:
    # Every float exactly (JSON keeps a float's repr); seconds unrounded, unlike as_dict().
    return {
        "epoch": r.epoch,
        "train_loss": r.train_loss,
        "train_acc": r.train_acc,
        "val_loss": r.val_loss,
        "val_acc": r.val_acc,
        "seconds": r.seconds,
    }


# ---------------------------------------------------------------------------------------------
# Reading


class _Header:
    """Typed access to a JSON object, with errors naming the field at fault."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise CheckpointError(f"checkpoint header: {where} must be an object")
        self.data, self.where = data, where

    def only(self, keys: tuple[str, ...] | list[str]) -> None:
        """Raise unless the object has exactly ``keys``."""
        if set(self.data) != set(keys):
            raise CheckpointError(
                f"checkpoint header: {self.where} has fields {sorted(self.data)}, expected {sorted(keys)}"
            )

    def get(self, key: str, kind: type, *, optional: bool = False) -> Any:
        """The field ``key``, which must be a ``kind`` (``float`` also takes an integer, ``int``
        never takes a bool), or None when ``optional``."""
        if key not in self.data:
            raise CheckpointError(f"checkpoint header: {self.where}.{key} is missing")
        value = self.data[key]
        if value is None and optional:
            return None
        ok = isinstance(value, kind) and not (isinstance(value, bool) and kind is not bool)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            field = f"{self.where}.{key}"
            raise CheckpointError(f"checkpoint header: {field} must be {kind.__name__}, got {value!r}")
        return value

    def count(self, key: str, minimum: int = 0) -> int:
        value = cast("int", self.get(key, int))
        if value < minimum:
            raise CheckpointError(f"checkpoint header: {self.where}.{key} must be >= {minimum}, got {value}")
        return value

    def sub(self, key: str, *, optional: bool = False) -> _Header | None:
        value = self.get(key, dict, optional=optional)
        return None if value is None else _Header(value, f"{self.where}.{key}")

    def floats(self, key: str) -> dict[str, float]:
        sub = _Header(self.get(key, dict), f"{self.where}.{key}")
        return {k: sub.get(k, float) for k in sub.data}

    def ints(self, key: str) -> dict[str, int]:
        sub = _Header(self.get(key, dict), f"{self.where}.{key}")
        return {k: sub.get(k, int) for k in sub.data}


_TOP_FIELDS = (
    "format",
    "format_version",
    "engine_version",
    "numpy_version",
    "network",
    "layout",
    "dropout_rng",
    "optimizer",
    "trainer",
    "preprocessing",
)
_ARCHITECTURE: dict[str, type] = {
    "input_size": int,
    "hidden_sizes": list,
    "output_size": int,
    "activation": str,
    "weight_init": str,
    "init_std": float,
    "batchnorm": bool,
    "dropout": float,
    "weight_decay": float,
    "loss": str,
    "dtype": str,
}


def _read_checkpoint(zf: zipfile.ZipFile) -> Checkpoint:
    names = set(zf.namelist())
    if f"{_HEADER}.npy" not in names:
        raise CheckpointError("not an engine checkpoint: the archive has no header")
    raw = _read_member(zf, _HEADER, np.dtype(np.uint8), None)
    if raw.size > _MAX_HEADER_BYTES:
        raise CheckpointError("not an engine checkpoint: the header is too large")
    try:
        data = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"not an engine checkpoint: the header is not JSON ({exc})") from None
    head = _Header(data, "header")
    if data.get("format") != FORMAT:
        raise CheckpointError(f"not an engine checkpoint: format {data.get('format')!r}, expected {FORMAT!r}")
    version = data.get("format_version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise CheckpointError(
            f"checkpoint format version {version!r} is not supported (this engine reads {FORMAT_VERSION})"
        )
    head.only(_TOP_FIELDS)
    network, dtype, shapes, param_shapes = _read_architecture(cast("_Header", head.sub("network")))
    layout = _layout(shapes)
    stated = head.get("layout", dict)
    if stated != {
        group: [[name, list(shape)] for name, shape in entries] for group, entries in layout.items()
    }:
        raise CheckpointError("checkpoint header: the layout does not match the network's architecture")
    expected: dict[str, tuple[np.dtype[Any], tuple[int, ...]]] = {
        f"net.{group}": (dtype, (sum(math.prod(shape) for _, shape in entries),))
        for group, entries in layout.items()
    }
    opt_head, trainer_head = head.sub("optimizer", optional=True), head.sub("trainer", optional=True)
    opt_params: list[str] = []
    if opt_head is not None:
        opt_params = _expect_optimizer(opt_head, param_shapes, dtype, expected)
    if trainer_head is not None and trainer_head.get("next_order", bool):
        n_train = cast("_Header", trainer_head.sub("settings")).count("n_train", 1)
        expected["trainer.next_order"] = (_index_dtype(n_train), (n_train,))

    members = {n.removesuffix(".npy") for n in names}
    if len(members) != len(names) or not all(n.endswith(".npy") for n in names):
        raise CheckpointError("not an engine checkpoint: a member is not a .npy array")
    extra, missing = sorted(members - expected.keys() - {_HEADER}), sorted(expected.keys() - members)
    if extra or missing:
        raise CheckpointError(
            f"checkpoint members do not match its header: missing {missing}, unexpected {extra}"
        )
    arrays = {
        name: _read_member(zf, name, dt, shape, any_integer=name == "trainer.next_order")
        for name, (dt, shape) in expected.items()
    }
    state: dict[str, Array] = {}
    for group, entries in layout.items():
        flat, offset = arrays[f"net.{group}"], 0
        for name, shape in entries:
            size = math.prod(shape)
            state[name] = flat[offset : offset + size].reshape(shape)
            offset += size

    optimizer = None
    if opt_head is not None:
        kind = opt_head.get("kind", str)
        slots = OPTIMIZERS[kind].state_slots
        optimizer = OptimizerState(
            kind=kind,
            hyperparameters=opt_head.floats("hyperparameters"),
            counters=opt_head.ints("counters"),
            slots={p: tuple(arrays[f"opt.{p}.{j}"] for j in range(slots)) for p in opt_params},
        )
    trainer = None
    if trainer_head is not None:
        trainer = _read_position(trainer_head, arrays.get("trainer.next_order"))
    return Checkpoint(
        network=network,
        arrays=state,
        dropout_rng=_read_rng(head, "dropout_rng"),
        optimizer=optimizer,
        trainer=trainer,
        engine_version=head.get("engine_version", str),
        preprocessing=_read_preprocessing(data["preprocessing"]),
    )


def _read_preprocessing(data: Any) -> Preprocessing | None:
    return None if data is None else Preprocessing.from_header(data)


def _read_architecture(
    head: _Header,
) -> tuple[dict[str, Any], np.dtype[Any], dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]:
    head.only(list(_ARCHITECTURE))
    network = {key: head.get(key, kind) for key, kind in _ARCHITECTURE.items()}
    hidden = network["hidden_sizes"]
    if not all(isinstance(h, int) and not isinstance(h, bool) for h in hidden):
        raise CheckpointError(f"checkpoint header: network.hidden_sizes must be integers, got {hidden!r}")
    sizes = _sizes(network)
    if min(sizes) < 1:
        raise CheckpointError(f"checkpoint header: layer sizes must be positive, got {sizes}")
    try:
        dtype = np.dtype(network["dtype"])
    except TypeError:
        dtype = np.dtype(object)
    if dtype.kind != "f":
        raise CheckpointError(
            f"checkpoint header: network.dtype must be a floating type, got {network['dtype']!r}"
        )
    shapes, param_shapes = state_shapes(sizes, batchnorm=network["batchnorm"])
    return network, dtype, shapes, param_shapes


def _expect_optimizer(
    head: _Header,
    param_shapes: Mapping[str, tuple[int, ...]],
    dtype: np.dtype[Any],
    expected: dict[str, tuple[np.dtype[Any], tuple[int, ...]]],
) -> list[str]:
    """Check the optimizer's header and add its members to ``expected``; returns its parameters."""
    head.only(["kind", "hyperparameters", "counters", "parameters"])
    kind = head.get("kind", str)
    cls = OPTIMIZERS.get(kind)
    if cls is None:
        raise CheckpointError(f"checkpoint header: unknown optimizer {kind!r}")
    hyper = sorted(head.floats("hyperparameters"))
    _check_same(f"{kind} hyperparameter names", hyper, sorted(cls.hyperparameter_names))
    _check_same(f"{kind} counter names", sorted(head.ints("counters")), sorted(cls.counter_names))
    params = head.get("parameters", list)
    if not all(isinstance(p, str) and p in param_shapes for p in params) or len(set(params)) != len(params):
        raise CheckpointError(f"checkpoint header: optimizer.parameters are not the network's: {params!r}")
    if cls.state_slots == 0 and params:
        raise CheckpointError(f"checkpoint header: {kind} keeps no state, yet it lists parameters {params}")
    for p in params:
        expected.update({f"opt.{p}.{j}": (dtype, param_shapes[p]) for j in range(cls.state_slots)})
    return cast("list[str]", params)


def _read_position(head: _Header, order: NDArray[Any] | None) -> TrainerPosition:
    head.only(["epoch", "steps", "seconds", "history", "shuffle_rng", "next_order", "settings"])
    settings = cast("_Header", head.sub("settings"))
    settings.only(list(_SETTINGS))
    values = {k: settings.count(k, 0 if k == "n_val" else 1) for k in _SETTINGS}
    epoch = head.count("epoch")
    history = tuple(_read_record(r, i) for i, r in enumerate(head.get("history", list)))
    if len(history) != epoch:
        raise CheckpointError(f"checkpoint header: {len(history)} epoch records for epoch {epoch}")
    seconds = head.get("seconds", float)
    if not (math.isfinite(seconds) and seconds >= 0):
        raise CheckpointError(f"checkpoint header: trainer.seconds must be finite and >= 0, got {seconds}")
    next_order = None
    if order is not None:
        n = values["n_train"]
        if not (np.all(order < n) and np.all(np.bincount(order.astype(np.intp), minlength=n) == 1)):
            raise CheckpointError("checkpoint trainer.next_order is not a permutation of the training rows")
        next_order = order.astype(np.intp)
    return TrainerPosition(
        epoch=epoch,
        steps=head.count("steps"),
        seconds=seconds,
        history=history,
        shuffle_rng=_read_rng(head, "shuffle_rng"),
        next_order=next_order,
        settings=values,
    )


def _read_record(data: Any, i: int) -> EpochRecord:
    rec = _Header(data, f"trainer.history[{i}]")
    rec.only(["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "seconds"])
    if rec.get("epoch", int) != i + 1:
        raise CheckpointError(f"checkpoint header: trainer.history[{i}] is of epoch {data['epoch']}")
    return EpochRecord(
        epoch=i + 1,
        train_loss=rec.get("train_loss", float),
        train_acc=rec.get("train_acc", float, optional=True),
        val_loss=rec.get("val_loss", float, optional=True),
        val_acc=rec.get("val_acc", float, optional=True),
        seconds=rec.get("seconds", float),
    )


def _read_rng(head: _Header, key: str) -> dict[str, Any]:
    state = _rng_from_json(head.get(key, dict))
    _check_rng_state(state)
    return cast("dict[str, Any]", state)


def _read_member(
    zf: zipfile.ZipFile,
    name: str,
    dtype: np.dtype[Any],
    shape: tuple[int, ...] | None,
    *,
    any_integer: bool = False,
) -> NDArray[Any]:
    """One ``.npy`` member, checked against ``dtype`` (or any integer type with ``any_integer``)
    and ``shape`` (None: any 1-D shape) from its header, before its data is read.

    Members must be stored uncompressed, as :meth:`Checkpoint.to_bytes` writes them: reading
    then never allocates more than the archive's own length.
    """
    info = zf.getinfo(f"{name}.npy")
    if info.compress_type != zipfile.ZIP_STORED:
        raise CheckpointError(f"checkpoint member {name} is compressed; engine checkpoints are stored")
    with zf.open(info) as f:
        found_shape, fortran, found = _read_npy_header(f, name, dtype, shape)
        ok_dtype = found == dtype or (any_integer and found.kind in "iu" and found.itemsize <= 8)
        ok_shape = len(found_shape) == 1 if shape is None else found_shape == shape
        if found.hasobject or not ok_dtype or not ok_shape:
            want = f"{'an integer array' if any_integer else dtype}{list(shape or ())}"
            raise CheckpointError(f"checkpoint member {name} is {found}{list(found_shape)}, expected {want}")
        nbytes = found.itemsize * math.prod(found_shape)
        if nbytes > info.file_size:
            raise CheckpointError(f"checkpoint member {name} is truncated")
        buf = f.read(nbytes)
        if len(buf) != nbytes or f.read(1):
            raise CheckpointError(f"checkpoint member {name} is truncated or has trailing bytes")
    return np.frombuffer(buf, dtype=found).reshape(found_shape, order="F" if fortran else "C")


def _read_npy_header(
    f: Any, name: str, dtype: np.dtype[Any], shape: tuple[int, ...] | None
) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    """Shape, Fortran order and dtype from the ``.npy`` header at the start of ``f``.

    The header is a Python dict literal; the one :func:`numpy.save` writes for the expected
    dtype and shape is recognized as text, anything else is parsed with :func:`ast.literal_eval`
    (literals only, never code), which costs ten times more.
    """
    magic = f.read(8)
    if len(magic) != 8 or magic[:6] != b"\x93NUMPY" or magic[6] not in (1, 2, 3):
        raise CheckpointError(f"checkpoint member {name} is not a .npy array")
    size_format = "<H" if magic[6] == 1 else "<I"
    size_bytes = f.read(struct.calcsize(size_format))
    if len(size_bytes) != struct.calcsize(size_format):
        raise CheckpointError(f"checkpoint member {name} is truncated")
    (length,) = struct.unpack(size_format, size_bytes)
    if length > 1 << 16:
        raise CheckpointError(f"checkpoint member {name} has an oversized .npy header")
    text = f.read(length).decode("utf-8" if magic[6] == 3 else "latin1", errors="replace")
    text = text.rstrip()
    prefix = f"{{'descr': {dtype.str!r}, 'fortran_order': False, 'shape': "
    if shape is not None and text == f"{prefix}{shape!r}, }}":
        return shape, False, dtype
    vector = re.fullmatch(rf"{re.escape(prefix)}\((\d+),\), \}}", text) if shape is None else None
    if vector is not None:  # a 1-D array of any length (the header member)
        return (int(vector.group(1)),), False, dtype
    try:
        header = ast.literal_eval(text)
        found_shape = tuple(int(n) for n in header["shape"])
        fortran = header["fortran_order"]
        found = np.lib.format.descr_to_dtype(header["descr"])
    except (ValueError, TypeError, KeyError, SyntaxError, MemoryError, RecursionError) as exc:
        raise CheckpointError(f"checkpoint member {name} has an invalid .npy header: {exc}") from None
    if not isinstance(fortran, bool) or min(found_shape, default=0) < 0:
        raise CheckpointError(f"checkpoint member {name} has an invalid .npy header")
    return found_shape, fortran, found
