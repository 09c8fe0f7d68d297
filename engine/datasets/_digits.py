"""``digits``: scikit-learn's bundled 8x8 digits (1797 rows, 64 features with values 0..16, 10
classes), read straight from the package's ``digits.csv.gz`` without importing scikit-learn."""

from __future__ import annotations

import gzip
import importlib.util
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._errors import DatasetError
from ._kind import DatasetKind, ReadOptions

__all__ = ["DIGITS"]


def _locate(_path: Path | None) -> tuple[Path]:
    """Locate scikit-learn's ``digits.csv.gz`` without importing scikit-learn."""
    try:
        spec = importlib.util.find_spec("sklearn")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError("the 'digits' dataset needs scikit-learn installed (it reads its digits.csv.gz)")
    candidates = [
        Path(loc) / "datasets" / "data" / "digits.csv.gz" for loc in spec.submodule_search_locations
    ]
    for candidate in candidates:
        if candidate.is_file():
            return (candidate,)
    raise DatasetError(f"scikit-learn's digits data not found: {candidates[0]}")


def _read(files: Sequence[Path], _options: ReadOptions) -> tuple[NDArray[np.float64], NDArray[Any]]:
    path = files[0]
    try:
        with gzip.open(path, "rt") as f:
            data = np.loadtxt(f, delimiter=",", dtype=np.float64, ndmin=2)
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        raise DatasetError(f"cannot read digits data {path}: {exc}") from exc
    if data.shape[0] == 0 or data.shape[1] < 2:
        raise DatasetError(
            f"digits data {path} has shape {data.shape}, expected rows of features and a label"
        )
    return np.ascontiguousarray(data[:, :-1]), data[:, -1].astype(np.int64)


DIGITS = DatasetKind(name="digits", path=None, read=_read, locate=_locate, pixel_max=16.0)
