"""Checkpoints: a network, its optimizer and a trainer's position, as bytes that never unpickle.

:class:`Checkpoint` takes and restores them (:func:`save_model` and :func:`load_model` for a
network alone) and converts them to and from bytes: the byte format is described in
:mod:`engine._checkpoint_format`, and read, every member checked, by :mod:`engine._checkpoint_io`.
"""

from __future__ import annotations

import dataclasses
import io
import json
import struct
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._checkpoint_format import (
    FORMAT,
    FORMAT_VERSION,
    HEADER,
    Array,
    OptimizerState,
    TrainerPosition,
    check_arrays,
    check_rng_state,
    check_same,
    index_dtype,
    layer_sizes,
    load_rng_state,
    member_layout,
    optimizer_kind,
    rng_state,
    rng_to_json,
    write_member,
)
from ._checkpoint_io import read_checkpoint
from ._errors import CheckpointError, ConfigError
from ._net import MultiLayerNet, state_shapes
from ._optimizers import OPTIMIZERS, Optimizer
from ._parameter import Parameter
from ._preprocessing import Preprocessing
from ._version import __version__

__all__ = [
    "FORMAT_VERSION",
    "Checkpoint",
    "OptimizerState",
    "TrainerPosition",
    "load_model",
    "load_rng_state",
    "save_model",
]


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
        return cls(net.architecture, net.state(), rng_state(net.dropout_rng))

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
        check_same("architecture", self.network, net.architecture)
        shapes, _ = state_shapes(net.sizes, batchnorm=bool(self.network["batchnorm"]))
        check_arrays(self.arrays, shapes, net.dtype, "network state")
        check_rng_state(self.dropout_rng)

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
        check_same("optimizer", state.kind, optimizer_kind(optimizer))
        check_same("optimizer hyperparameters", state.hyperparameters, optimizer.hyperparameters())
        check_same("architecture", self.network, net.architecture)
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
            "dropout_rng": rng_to_json(self.dropout_rng),
            "optimizer": None,
            "trainer": None,
            "preprocessing": None if self.preprocessing is None else self.preprocessing.header(),
        }
        dtype = np.dtype(self.network["dtype"])
        shapes, _ = state_shapes(layer_sizes(self.network), batchnorm=bool(self.network["batchnorm"]))
        check_arrays(self.arrays, shapes, dtype, "network state")
        layout = member_layout(shapes)
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
                members["trainer.next_order"] = order.astype(index_dtype(order.size))
        text = json.dumps(header, sort_keys=True, separators=(",", ":"), allow_nan=True)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            write_member(zf, HEADER, np.frombuffer(text.encode(), dtype=np.uint8))
            for name in sorted(members):
                write_member(zf, name, members[name])
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
                return cls(**read_checkpoint(zf))
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
