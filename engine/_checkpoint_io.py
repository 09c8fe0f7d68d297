"""Reading checkpoints: every field of the header and every member of the archive checked.

The format is described in :mod:`engine._checkpoint_format`. Reading validates the header's
fields by type, the architecture, the layout and the optimizer against each other, and each
``.npy`` member's shape and dtype against the header before its data is read, so a foreign archive
costs no more memory than its own length; nothing is ever unpickled.
"""

from __future__ import annotations

import ast
import json
import math
import re
import struct
import zipfile
from collections.abc import Mapping
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from ._checkpoint_format import (
    FORMAT,
    FORMAT_VERSION,
    HEADER,
    MAX_HEADER_BYTES,
    SETTINGS,
    Array,
    OptimizerState,
    TrainerPosition,
    check_rng_state,
    check_same,
    index_dtype,
    layer_sizes,
    member_layout,
    rng_from_json,
)
from ._errors import CheckpointError
from ._net import state_shapes
from ._optimizers import OPTIMIZERS
from ._preprocessing import Preprocessing
from ._records import EpochRecord

__all__ = ["read_checkpoint"]


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


# Long on purpose: the format read in its own order, every member checked before any data is read.
def read_checkpoint(zf: zipfile.ZipFile) -> dict[str, Any]:
    """The fields of the :class:`~engine.Checkpoint` in an archive, every member checked against
    its header before its data is read.

    Raises:
        CheckpointError: The archive is not an engine checkpoint of this format version.
    """
    names = set(zf.namelist())
    if f"{HEADER}.npy" not in names:
        raise CheckpointError("not an engine checkpoint: the archive has no header")
    raw = _read_member(zf, HEADER, np.dtype(np.uint8), None)
    if raw.size > MAX_HEADER_BYTES:
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
    layout = member_layout(shapes)
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
        expected["trainer.next_order"] = (index_dtype(n_train), (n_train,))

    members = {n.removesuffix(".npy") for n in names}
    if len(members) != len(names) or not all(n.endswith(".npy") for n in names):
        raise CheckpointError("not an engine checkpoint: a member is not a .npy array")
    extra, missing = sorted(members - expected.keys() - {HEADER}), sorted(expected.keys() - members)
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
    return {
        "network": network,
        "arrays": state,
        "dropout_rng": _read_rng(head, "dropout_rng"),
        "optimizer": optimizer,
        "trainer": trainer,
        "engine_version": head.get("engine_version", str),
        "preprocessing": _read_preprocessing(data["preprocessing"]),
    }


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
    sizes = layer_sizes(network)
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
    check_same(f"{kind} hyperparameter names", hyper, sorted(cls.hyperparameter_names))
    check_same(f"{kind} counter names", sorted(head.ints("counters")), sorted(cls.counter_names))
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
    settings.only(list(SETTINGS))
    values = {k: settings.count(k, 0 if k == "n_val" else 1) for k in SETTINGS}
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
    state = rng_from_json(head.get(key, dict))
    check_rng_state(state)
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
