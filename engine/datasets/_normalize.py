"""Feature normalization with statistics of the train split only, and the output dtype."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from .._errors import DatasetError

__all__ = ["NORMALIZE_MODES", "check_dtype", "check_normalize", "normalize_splits"]

NORMALIZE_MODES = ("auto", "scale", "standardize", "none")

_Splits = tuple[NDArray[Any], NDArray[Any], NDArray[Any]]
_Floats = tuple[NDArray[np.floating], NDArray[np.floating], NDArray[np.floating]]


def check_dtype(dtype: DTypeLike) -> np.dtype[np.floating]:
    """``dtype`` as a NumPy dtype, which must be float32 or float64."""
    try:
        resolved = np.dtype(dtype)
    except TypeError as exc:
        raise DatasetError(f"dtype must be float32 or float64, got {dtype!r}", field="dtype") from exc
    if resolved not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise DatasetError(f"dtype must be float32 or float64, got {resolved}", field="dtype")
    return resolved  # type: ignore[return-value]


def check_normalize(mode: str) -> str:
    """``mode``, which must be one of :data:`NORMALIZE_MODES`."""
    if mode not in NORMALIZE_MODES:
        raise DatasetError(
            f"normalize must be one of {', '.join(NORMALIZE_MODES)}, got {mode!r}", field="normalize"
        )
    return mode


def normalize_splits(
    splits: _Splits, mode: str, pixel_max: float | None, dtype: np.dtype[np.floating]
) -> _Floats:
    """Normalize the three feature splits with statistics of the first (train) one.

    Args:
        splits: Train, validation and test features.
        mode: One of :data:`NORMALIZE_MODES`; ``auto`` scales when ``pixel_max`` is known and
            standardizes otherwise.
        pixel_max: The kind's largest possible value, or None (``scale`` then divides by the
            largest absolute train value).
        dtype: The output dtype.

    Returns:
        Fresh C-contiguous arrays in ``dtype``.
    """
    train = splits[0]
    if mode == "auto":
        mode = "scale" if pixel_max is not None else "standardize"
    if mode == "none":
        return _cast3(splits, dtype)
    if mode == "scale":
        if pixel_max is None:
            peak = float(np.max(np.abs(train))) if train.size else 0.0
            pixel_max = peak if peak > 0 and math.isfinite(peak) else 1.0
        out = _cast3(splits, dtype)
        for a in out:
            a /= pixel_max
        return out
    # standardize
    train64 = train.astype(np.float64)
    mean = train64.mean(axis=0)
    std = train64.std(axis=0)
    constant = np.ptp(train64, axis=0) == 0
    mean[constant] = train64[0, constant]
    std[constant] = 1.0
    a, b, c = (
        np.ascontiguousarray((np.asarray(s, dtype=np.float64) - mean) / std, dtype=dtype)
        for s in (train64, splits[1], splits[2])
    )
    return a, b, c


def _cast3(splits: _Splits, dtype: np.dtype[np.floating]) -> _Floats:
    """Fresh C-contiguous copies in ``dtype`` (never views of the input)."""
    a, b, c = (s.astype(dtype, order="C", copy=True) for s in splits)
    return a, b, c
