"""``npz``: a NumPy archive with a feature array ``x`` and a label array ``y``."""

from __future__ import annotations

import pickle
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._errors import DatasetError
from ._kind import DatasetKind, ReadOptions

__all__ = ["NPZ"]

_X_KEYS = ("x", "X")
_Y_KEYS = ("y", "t", "labels")


def _read_arrays(path: Path) -> tuple[str, NDArray[Any], str, NDArray[Any]]:
    """The archive's feature and label arrays with their keys."""
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError) as exc:
        raise DatasetError(f"cannot read npz file {path}: {exc}") from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DatasetError(f"not an npz archive: {path}")
    try:
        found = list(archive.files)
        x_key = next((k for k in _X_KEYS if k in found), None)
        y_key = next((k for k in _Y_KEYS if k in found), None)
        if x_key is None or y_key is None:
            raise DatasetError(
                f"npz file {path} needs a feature array ({'/'.join(_X_KEYS)}) and a label array "
                f"({'/'.join(_Y_KEYS)}); it has {len(found)} arrays under other names"
            )
        try:
            return x_key, archive[x_key], y_key, archive[y_key]
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise DatasetError(f"cannot read arrays from npz file {path}: {exc}") from exc
    finally:
        archive.close()


def _read(files: Sequence[Path], _options: ReadOptions) -> tuple[NDArray[np.float64], NDArray[Any]]:
    path = files[0]
    x_key, x_raw, y_key, y_raw = _read_arrays(path)
    if x_raw.ndim == 0 or x_raw.shape[0] == 0:
        raise DatasetError(f"npz file {path}: '{x_key}' has no rows (shape {x_raw.shape})")
    if x_raw.dtype.kind not in "biuf":
        raise DatasetError(f"npz file {path}: '{x_key}' must be numeric, got dtype {x_raw.dtype}")
    if y_raw.ndim != 1 or y_raw.shape[0] != x_raw.shape[0]:
        raise DatasetError(
            f"npz file {path}: labels '{y_key}' must have shape ({x_raw.shape[0]},), got {y_raw.shape}"
        )
    x = np.ascontiguousarray(x_raw.reshape(x_raw.shape[0], -1), dtype=np.float64)
    if x.shape[1] == 0:
        raise DatasetError(f"npz file {path}: '{x_key}' has no features (shape {x_raw.shape})")
    if not np.isfinite(x).all():
        row = int(np.argwhere(~np.isfinite(x))[0, 0])
        raise DatasetError(f"npz file {path}: '{x_key}' has a non-finite value in row {row}")
    if y_raw.dtype.kind == "f":
        if not (np.isfinite(y_raw).all() and (y_raw == np.round(y_raw)).all()):
            raise DatasetError(f"npz file {path}: labels '{y_key}' must be integers, got non-integral floats")
        return x, y_raw.astype(np.int64)
    if y_raw.dtype.kind not in "biuUS":
        raise DatasetError(f"npz file {path}: labels '{y_key}' must be integers, got dtype {y_raw.dtype}")
    return x, y_raw


NPZ = DatasetKind(name="npz", path="file", read=_read, suffixes=(".npz",))
