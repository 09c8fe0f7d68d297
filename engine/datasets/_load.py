"""Loading a dataset of any registered kind: arguments, files, cache, then split and normalize."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
from numpy.typing import DTypeLike, NDArray

from .._errors import DatasetError
from ._cache import Raw, load_raw, stamp
from ._kind import OPTION_DEFAULTS, DatasetKind, ReadOptions
from ._normalize import check_dtype, check_normalize, normalize_splits
from ._registry import KINDS, get_kind
from ._split import split_arrays
from ._types import Dataset, Split

__all__ = ["load_arrays", "load_dataset"]

_PathArg = str | os.PathLike[str]


def load_dataset(
    kind: str,
    *,
    path: _PathArg | None = None,
    subset: int | None = None,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    seed: int = 0,
    normalize: str = "auto",
    dtype: DTypeLike = np.float32,
    label_column: str | int = -1,
) -> Dataset:
    """Load, split and normalize a dataset.

    Args:
        kind: One of :data:`DATASET_KINDS`.
        path: The MNIST directory, or the npz/csv file. Required for those kinds; not allowed for
            ``digits``.
        subset: Keep only this many of the non-test rows (before the validation split).
        val_fraction: Fraction of the (subset of the) non-test rows used for validation.
        test_fraction: Fraction of all rows held out as the test split (0 for none).
        seed: Seed of the permutation behind the splits.
        normalize: ``"auto"`` (divide by the pixel maximum for image sets, standardize npz/csv),
            ``"scale"`` (divide by the pixel maximum, or by the largest absolute train value for
            npz/csv), ``"standardize"`` (per-feature z-score with train mean and std) or ``"none"``.
        dtype: Feature dtype of the splits: float32 or float64.
        label_column: CSV only: index (negative counts from the end) or header name of the label
            column. Other kinds refuse any value but the default.

    Returns:
        The dataset; its arrays are fresh, C-contiguous and owned by the caller.

    Raises:
        DatasetError: The source is missing or malformed, or an argument is out of range.
    """
    out_dtype = check_dtype(dtype)
    mode = check_normalize(normalize)
    raw, spec, name = _load(kind, path, label_column)
    (x_tr, t_tr), (x_va, t_va), (x_te, t_te) = split_arrays(
        raw.x, raw.t, subset=subset, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed
    )
    (x_tr_n, x_va_n, x_te_n), prep = normalize_splits((x_tr, x_va, x_te), mode, spec.pixel_max, out_dtype)
    return Dataset(
        name=name,
        train=Split(x_tr_n, t_tr),
        val=Split(x_va_n, t_va),
        test=Split(x_te_n, t_te),
        num_classes=int(raw.t.max()) + 1,
        preprocessing=dataclasses.replace(prep, classes=raw.classes),
    )


def load_arrays(
    kind: str, *, path: _PathArg | None = None, label_column: str | int = -1
) -> tuple[NDArray[np.float64], NDArray[np.int64], float | None]:
    """Load a whole dataset without splitting or normalizing it.

    Results are cached per process, keyed by kind, resolved path, file modification times and
    sizes, and label column; an edited file is read again.

    Args:
        kind: One of :data:`DATASET_KINDS`.
        path: The MNIST directory, or the npz/csv file (see :func:`load_dataset`).
        label_column: CSV only: index or header name of the label column.

    Returns:
        ``(x, t, pixel_max)``: features ``(n, features)`` as float64, labels ``(n,)`` as class
        indices ``0..k-1``, and the known pixel maximum for image sets (16.0 for digits, 255.0
        for MNIST) or None. The arrays are read-only views of the cache or fresh copies.

    Raises:
        DatasetError: The source is missing or malformed.
    """
    raw, spec, _ = _load(kind, path, label_column)
    x = raw.x.view() if raw.x.dtype == np.float64 else raw.x.astype(np.float64)
    return x, raw.t.view(), spec.pixel_max


def _load(kind: str, path: _PathArg | None, label_column: str | int) -> tuple[Raw, DatasetKind, str]:
    """Validate the arguments, locate the files, and return the cached raw data, the kind and a
    name for the dataset."""
    spec = get_kind(kind)
    options = _options(spec, label_column)
    resolved = _check_path(spec, path)
    files = tuple(stamp(p) for p in spec.locate(resolved))
    return load_raw(spec, files, options), spec, _name(spec, resolved)


def _options(kind: DatasetKind, label_column: str | int) -> ReadOptions:
    """The options ``kind`` reads; the others must keep their defaults (which key the cache)."""
    if isinstance(label_column, bool) or not isinstance(label_column, str | int | np.integer):
        raise DatasetError(
            f"label_column must be a column index or header name, got {label_column!r}", field="label_column"
        )
    given = ReadOptions(label_column=label_column if isinstance(label_column, str) else int(label_column))
    for name, default in OPTION_DEFAULTS.items():
        if name not in kind.options and getattr(given, name) != default:
            takers = ", ".join(k.name for k in KINDS.values() if name in k.options)
            raise DatasetError(f"{name} is not used for kind {kind.name!r} (only for {takers})", field=name)
    return given


def _check_path(kind: DatasetKind, path: _PathArg | None) -> Path | None:
    """The resolved path, checked against what ``kind`` takes (None for kinds without one)."""
    if kind.path is None:
        if path is not None:
            raise DatasetError(f"dataset path is not used for kind {kind.name!r}, got {path!r}")
        return None
    if path is None:
        raise DatasetError(f"dataset path is required for kind {kind.name!r}", field="path")
    try:
        resolved = Path(os.fspath(path)).expanduser().resolve()
    except (TypeError, OSError, RuntimeError) as exc:
        raise DatasetError(f"invalid dataset path {path!r}: {exc}") from exc
    if not resolved.exists():
        raise DatasetError(f"{kind.name} {kind.path} not found: {resolved}")
    if not (resolved.is_dir() if kind.path == "directory" else resolved.is_file()):
        raise DatasetError(f"{kind.name} path is not a {kind.path}: {resolved}")
    return resolved


def _name(kind: DatasetKind, path: Path | None) -> str:
    """The kind's name, or a file's name without the kind's suffixes."""
    if kind.path != "file" or path is None:
        return kind.name
    name = path.name
    for suffix in kind.suffixes:
        name = name.removesuffix(suffix)
    return name or kind.name
