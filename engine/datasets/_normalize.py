"""Feature normalization with statistics of the train split only, and the output dtype."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from .._errors import DatasetError
from .._preprocessing import Preprocessing

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
) -> tuple[_Floats, Preprocessing]:
    """Normalize the three feature splits with statistics of the first (train) one.

    Args:
        splits: Train, validation and test features.
        mode: One of :data:`NORMALIZE_MODES`; ``auto`` scales when ``pixel_max`` is known and
            standardizes otherwise.
        pixel_max: The kind's largest possible value, or None (``scale`` then divides by the
            largest absolute train value).
        dtype: The output dtype.

    Returns:
        Fresh C-contiguous arrays in ``dtype``, and the normalization (kept with a trained
        network, so that its predictions normalize new rows alike).
    """
    prep = Preprocessing.fit(splits[0], mode, pixel_max)
    a, b, c = (prep.apply(s, dtype) for s in splits)
    return (a, b, c), prep
