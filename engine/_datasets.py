"""Datasets for classification: load, split into train/val/test, normalize.

Four kinds of source are supported:

- ``digits``: scikit-learn's bundled 8x8 digits (1797 rows, 64 features with values 0..16, 10
  classes), read straight from the package's ``digits.csv.gz`` without importing scikit-learn;
- ``mnist``: a directory of the standard MNIST IDX files (plain or ``.gz``);
- ``npz``: a NumPy archive with a feature array ``x`` and a label array ``y``;
- ``csv``: a CSV file of numbers with one label column, optionally with a header row.

Labels always come back as contiguous class indices ``0..k-1`` (sorted unique values mapped in
order). Raw arrays are cached per process (see :func:`load_arrays`) because a worker loads the same
data for many trials; the cache hands out read-only views or fresh copies, never its own arrays.

Splitting (:func:`split_arrays`) draws one permutation from the seed. The test split is carved out
first, so for a given seed and ``test_fraction`` the held-out rows never depend on ``subset`` or
``val_fraction``. Normalization statistics come from the train split only.
"""

from __future__ import annotations

import csv
import functools
import gzip
import importlib.util
import math
import os
import pickle
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import numpy as np
from numpy.typing import DTypeLike, NDArray

from ._errors import DatasetError

__all__ = ["DATASET_KINDS", "Dataset", "Split", "load_arrays", "load_dataset", "read_idx", "split_arrays"]

DATASET_KINDS = ("digits", "mnist", "npz", "csv")
_NORMALIZE_MODES = ("auto", "scale", "standardize", "none")
_PATH_KINDS = ("mnist", "npz", "csv")

_DIGITS_PIXEL_MAX = 16.0
_MNIST_PIXEL_MAX = 255.0
_MNIST_PREFIXES = ("train", "t10k")
_IDX_IMAGES_MAGIC = 2051
_IDX_LABELS_MAGIC = 2049
_IDX_UBYTE = 0x08
_GZIP_MAGIC = b"\x1f\x8b"
_NPZ_X_KEYS = ("x", "X")
_NPZ_Y_KEYS = ("y", "t", "labels")
_CACHE_SIZE = 8

_ScalarT = TypeVar("_ScalarT", bound=np.generic)
_PathArg = str | os.PathLike[str]


@dataclass(frozen=True, slots=True)
class Split:
    """One split of a dataset.

    Attributes:
        x: Features ``(n, features)``, C-contiguous, in the dtype asked of :func:`load_dataset`.
        t: Class indices ``(n,)`` as int64.
    """

    x: NDArray[np.floating]
    t: NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Dataset:
    """A classification dataset split into train, validation and test rows.

    Attributes:
        name: Short name for reports (the kind, or the file name for npz/csv).
        train: Rows to fit on (normalization statistics come from these only).
        val: Rows to score hyperparameters on.
        test: Held-out rows (possibly empty), fixed for a given seed and ``test_fraction``.
        num_classes: Number of distinct labels in the whole loaded data.
    """

    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int

    @property
    def input_size(self) -> int:
        """Number of features per row."""
        return int(self.train.x.shape[1])


class _FileStamp(NamedTuple):
    """A file and what identifies its current content (the cache key)."""

    path: str
    mtime_ns: int
    size: int


class _Raw(NamedTuple):
    """Cached raw data: read-only features in their stored dtype, labels 0..k-1, pixel max."""

    x: NDArray[Any]
    t: NDArray[np.int64]
    pixel_max: float | None


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


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
            column.

    Returns:
        The dataset; its arrays are fresh, C-contiguous and owned by the caller.

    Raises:
        DatasetError: The source is missing or malformed, or an argument is out of range.
    """
    out_dtype = _check_dtype(dtype)
    if normalize not in _NORMALIZE_MODES:
        raise DatasetError(
            f"normalize must be one of {', '.join(_NORMALIZE_MODES)}, got {normalize!r}", field="normalize"
        )
    raw, name = _load(kind, path, label_column)
    (x_tr, t_tr), (x_va, t_va), (x_te, t_te) = split_arrays(
        raw.x, raw.t, subset=subset, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed
    )
    x_tr_n, x_va_n, x_te_n = _normalize((x_tr, x_va, x_te), normalize, raw.pixel_max, out_dtype)
    return Dataset(
        name=name,
        train=Split(x_tr_n, t_tr),
        val=Split(x_va_n, t_va),
        test=Split(x_te_n, t_te),
        num_classes=int(raw.t.max()) + 1,
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
    raw, _ = _load(kind, path, label_column)
    x = raw.x.view() if raw.x.dtype == np.float64 else raw.x.astype(np.float64)
    return x, raw.t.view(), raw.pixel_max


def split_arrays(
    x: NDArray[_ScalarT],
    t: NDArray[np.integer],
    *,
    subset: int | None = None,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> tuple[
    tuple[NDArray[_ScalarT], NDArray[np.int64]],
    tuple[NDArray[_ScalarT], NDArray[np.int64]],
    tuple[NDArray[_ScalarT], NDArray[np.int64]],
]:
    """Split rows into train, validation and test with one seeded permutation.

    The first ``round(test_fraction * n)`` permuted rows are the test split. Of the rest, the
    first ``subset`` (all if None) are kept; ``round(val_fraction * m)`` of those ``m`` rows are
    the validation split and the remainder the train split. The test split therefore depends only
    on ``seed``, ``test_fraction`` and the data.

    Args:
        x: Features, one row per sample.
        t: Labels ``(n,)``.
        subset: Number of non-test rows to keep (at least 2).
        val_fraction: Validation fraction of the kept rows, in [0, 1).
        test_fraction: Test fraction of all rows, in [0, 1).
        seed: Seed for ``np.random.default_rng``.

    Returns:
        ``((x_train, t_train), (x_val, t_val), (x_test, t_test))``, all fresh arrays.

    Raises:
        DatasetError: Mismatched inputs, or fractions/subset out of range or leaving no
            training row.
    """
    if x.ndim < 1 or t.ndim != 1 or x.shape[0] != t.shape[0]:
        raise DatasetError(
            f"x and t need the same number of rows with t 1-D, got shapes {x.shape} and {t.shape}"
        )
    n = int(x.shape[0])
    if n == 0:
        raise DatasetError("cannot split an empty dataset")
    val_fraction = _check_fraction("val_fraction", val_fraction)
    test_fraction = _check_fraction("test_fraction", test_fraction)
    rng = np.random.default_rng(_check_seed(seed))

    n_test = round(test_fraction * n)
    rest = n - n_test
    if rest < 1:
        raise DatasetError(
            f"test_fraction={test_fraction} leaves no rows for training out of {n}", field="test_fraction"
        )
    if subset is not None:
        if isinstance(subset, bool) or not isinstance(subset, int | np.integer):
            raise DatasetError(f"subset must be an integer or None, got {subset!r}", field="subset")
        if not 2 <= subset <= rest:
            raise DatasetError(
                f"subset must be between 2 and {rest} (rows left after the test split), got {subset}",
                field="subset",
            )
        m = int(subset)
    else:
        m = rest
    n_val = round(val_fraction * m)
    if m - n_val < 1:
        raise DatasetError(
            f"val_fraction={val_fraction} leaves no training rows out of {m}", field="val_fraction"
        )

    perm = rng.permutation(n)
    test_idx = perm[:n_test]
    kept = perm[n_test : n_test + m]
    val_idx, train_idx = kept[:n_val], kept[n_val:]
    labels = np.asarray(t, dtype=np.int64)
    return (
        (x[train_idx], labels[train_idx]),
        (x[val_idx], labels[val_idx]),
        (x[test_idx], labels[test_idx]),
    )


def read_idx(path: _PathArg) -> NDArray[np.uint8]:
    """Read one IDX file of unsigned bytes (plain or gzip-compressed, detected from its content).

    Args:
        path: The file.

    Returns:
        A fresh array shaped as the header declares.

    Raises:
        DatasetError: The file is missing, truncated, not IDX, or not of unsigned bytes.
    """
    array, _ = _read_idx(Path(os.fspath(path)))
    return array.copy()


# --------------------------------------------------------------------------------------------
# Loading and caching
# --------------------------------------------------------------------------------------------


def _load(kind: str, path: _PathArg | None, label_column: str | int) -> tuple[_Raw, str]:
    """Validate the arguments, locate the files and return the cached raw data and a name."""
    if not isinstance(kind, str) or kind not in DATASET_KINDS:
        raise DatasetError(
            f"unknown dataset kind {kind!r}; expected one of: {', '.join(DATASET_KINDS)}", field="kind"
        )
    if isinstance(label_column, bool) or not isinstance(label_column, str | int | np.integer):
        raise DatasetError(
            f"label_column must be a column index or header name, got {label_column!r}", field="label_column"
        )
    if kind == "digits":
        if path is not None:
            raise DatasetError(f"dataset path is not used for kind 'digits', got {path!r}")
        return _load_cached(kind, (_stamp(_digits_file()),), -1), "digits"

    if path is None:
        raise DatasetError(f"dataset path is required for kind {kind!r}", field="path")
    try:
        resolved = Path(os.fspath(path)).expanduser().resolve()
    except (TypeError, OSError, RuntimeError) as exc:
        raise DatasetError(f"invalid dataset path {path!r}: {exc}") from exc
    if kind == "mnist":
        files = tuple(_stamp(p) for pair in _mnist_files(resolved) for p in pair)
        return _load_cached(kind, files, -1), "mnist"

    if not resolved.exists():
        raise DatasetError(f"{kind} file not found: {resolved}")
    if not resolved.is_file():
        raise DatasetError(f"{kind} path is not a file: {resolved}")
    key_column: str | int = -1  # only CSV files have a label column
    if kind == "csv":
        key_column = label_column if isinstance(label_column, str) else int(label_column)
    name = resolved.name
    for suffix in (".gz", ".csv", ".npz"):
        name = name.removesuffix(suffix)
    return _load_cached(kind, (_stamp(resolved),), key_column), name or kind


def _stamp(path: Path) -> _FileStamp:
    try:
        st = path.stat()
    except OSError as exc:
        raise DatasetError(f"cannot stat {path}: {exc}") from exc
    return _FileStamp(str(path), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _load_cached(kind: str, files: tuple[_FileStamp, ...], label_column: str | int) -> _Raw:
    """Read a dataset from disk; cached, so every array it returns is made read-only."""
    paths = [Path(f.path) for f in files]
    pixel_max: float | None = None
    x: NDArray[Any]
    if kind == "digits":
        x, labels = _read_digits(paths[0])
        pixel_max = _DIGITS_PIXEL_MAX
    elif kind == "mnist":
        x, labels = _read_mnist(paths)
        pixel_max = _MNIST_PIXEL_MAX
    elif kind == "npz":
        x, labels = _read_npz(paths[0])
    else:
        x, labels = _read_csv(paths[0], label_column)
    t = _encode_labels(labels, files[0].path if len(files) == 1 else str(paths[0].parent))
    x.setflags(write=False)
    t.setflags(write=False)
    return _Raw(x, t, pixel_max)


def _encode_labels(labels: NDArray[Any], source: str) -> NDArray[np.int64]:
    """Map the sorted unique labels to 0..k-1; at least two classes are required."""
    classes, inverse = np.unique(labels, return_inverse=True)
    if classes.size < 2:
        raise DatasetError(f"{source}: need at least 2 classes, found {classes.size}")
    return np.ascontiguousarray(inverse.reshape(-1), dtype=np.int64)


# --------------------------------------------------------------------------------------------
# digits
# --------------------------------------------------------------------------------------------


def _digits_file() -> Path:
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
            return candidate
    raise DatasetError(f"scikit-learn's digits data not found: {candidates[0]}")


def _read_digits(path: Path) -> tuple[NDArray[np.float64], NDArray[Any]]:
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


# --------------------------------------------------------------------------------------------
# MNIST / IDX
# --------------------------------------------------------------------------------------------


def _find_variant(directory: Path, name: str) -> Path | None:
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _mnist_files(directory: Path) -> list[tuple[Path, Path]]:
    """The (images, labels) pairs present in ``directory``, train first."""
    if not directory.exists():
        raise DatasetError(f"mnist directory not found: {directory}")
    if not directory.is_dir():
        raise DatasetError(f"mnist path is not a directory: {directory}")
    pairs: list[tuple[Path, Path]] = []
    for prefix in _MNIST_PREFIXES:
        images_name, labels_name = f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"
        images = _find_variant(directory, images_name)
        labels = _find_variant(directory, labels_name)
        if images is not None and labels is not None:
            pairs.append((images, labels))
        elif images is not None:
            raise DatasetError(f"{images} has no matching {labels_name}[.gz] in {directory}")
        elif labels is not None:
            raise DatasetError(f"{labels} has no matching {images_name}[.gz] in {directory}")
    if not pairs:
        expected = ", ".join(f"{p}-images-idx3-ubyte + {p}-labels-idx1-ubyte" for p in _MNIST_PREFIXES)
        raise DatasetError(f"no MNIST IDX files in {directory}: expected {expected} (each optionally .gz)")
    return pairs


def _read_mnist(paths: list[Path]) -> tuple[NDArray[np.uint8], NDArray[Any]]:
    """Read and concatenate (images, labels) pairs given as a flat list."""
    xs: list[NDArray[np.uint8]] = []
    ts: list[NDArray[np.uint8]] = []
    shapes: list[tuple[int, ...]] = []
    for images_path, labels_path in zip(paths[::2], paths[1::2], strict=True):
        images, _ = _read_idx(images_path, _IDX_IMAGES_MAGIC)
        labels, _ = _read_idx(labels_path, _IDX_LABELS_MAGIC)
        if images.shape[0] != labels.shape[0]:
            raise DatasetError(
                f"{images_path} has {images.shape[0]} images but {labels_path} has {labels.shape[0]} labels"
            )
        if images.shape[1] * images.shape[2] == 0:
            raise DatasetError(f"{images_path} declares empty images of {images.shape[1]}x{images.shape[2]}")
        if shapes and images.shape[1:] != shapes[0]:
            raise DatasetError(
                f"{images_path} has images of {images.shape[1]}x{images.shape[2]}, "
                f"but {paths[0]} has {shapes[0][0]}x{shapes[0][1]}"
            )
        shapes.append(images.shape[1:])
        xs.append(images.reshape(images.shape[0], -1))
        ts.append(labels)
    x = xs[0] if len(xs) == 1 else np.concatenate(xs)
    t = ts[0] if len(ts) == 1 else np.concatenate(ts)
    if x.shape[0] == 0:
        raise DatasetError(f"{paths[0].parent} holds no images")
    return x, t


def _read_idx(path: Path, expected_magic: int | None = None) -> tuple[NDArray[np.uint8], int]:
    """Read an IDX file of unsigned bytes; return a read-only array and the magic number."""
    try:
        blob = path.read_bytes()
        if blob[:2] == _GZIP_MAGIC:
            blob = gzip.decompress(blob)
    except FileNotFoundError as exc:
        raise DatasetError(f"IDX file not found: {path}") from exc
    except EOFError as exc:
        raise DatasetError(f"truncated gzip IDX file {path}: {exc}") from exc
    except (OSError, zlib.error) as exc:
        raise DatasetError(f"cannot read IDX file {path}: {exc}") from exc
    if len(blob) < 4:
        raise DatasetError(f"truncated IDX file {path}: no complete header")
    magic = int.from_bytes(blob[:4], "big")
    if expected_magic is not None and magic != expected_magic:
        raise DatasetError(f"bad magic number {magic} in IDX file {path}, expected {expected_magic}")
    if blob[0] != 0 or blob[1] != 0 or blob[3] == 0:
        raise DatasetError(f"not an IDX file: {path} (magic number {magic})")
    if blob[2] != _IDX_UBYTE:
        raise DatasetError(f"IDX file {path} has data type 0x{blob[2]:02x}; only 0x08 (ubyte) is supported")
    ndim = blob[3]
    offset = 4 + 4 * ndim
    if len(blob) < offset:
        raise DatasetError(f"truncated IDX file {path}: incomplete dimensions")
    dims = struct.unpack(f">{ndim}I", blob[4:offset])
    expected, found = math.prod(dims), len(blob) - offset
    if found != expected:
        what = "truncated" if found < expected else "oversized"
        raise DatasetError(f"{what} IDX file {path}: dimensions {dims} need {expected} bytes, found {found}")
    return np.frombuffer(blob, dtype=np.uint8, offset=offset).reshape(dims), magic


# --------------------------------------------------------------------------------------------
# npz
# --------------------------------------------------------------------------------------------


def _read_npz(path: Path) -> tuple[NDArray[np.float64], NDArray[Any]]:
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError) as exc:
        raise DatasetError(f"cannot read npz file {path}: {exc}") from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DatasetError(f"not an npz archive: {path}")
    try:
        found = list(archive.files)
        x_key = next((k for k in _NPZ_X_KEYS if k in found), None)
        y_key = next((k for k in _NPZ_Y_KEYS if k in found), None)
        if x_key is None or y_key is None:
            raise DatasetError(
                f"npz file {path} needs a feature array ({'/'.join(_NPZ_X_KEYS)}) and a label array "
                f"({'/'.join(_NPZ_Y_KEYS)}); it has {len(found)} arrays under other names"
            )
        try:
            x_raw, y_raw = archive[x_key], archive[y_key]
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise DatasetError(f"cannot read arrays from npz file {path}: {exc}") from exc
    finally:
        archive.close()

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


# --------------------------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------------------------


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _read_csv(path: Path, label_column: str | int) -> tuple[NDArray[np.float64], NDArray[Any]]:
    """Read features and raw labels from a CSV file (rows are 1-based file lines, columns 0-based)."""
    try:
        opener = gzip.open if path.name.endswith(".gz") else open
        rows: list[tuple[int, list[str]]] = []
        with opener(path, "rt", encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            for row in reader:
                cells = [c.strip() for c in row]
                if any(cells):  # blank lines are skipped
                    rows.append((reader.line_num, cells))
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"cannot read csv file {path}: {exc}") from exc
    if not rows:
        raise DatasetError(f"csv file {path} is empty")
    first = rows[0][1]
    width = len(first)
    if width < 2:
        raise DatasetError(f"csv file {path} needs at least 2 columns (features and a label), found {width}")

    if isinstance(label_column, str):
        if label_column not in first:
            raise DatasetError(
                f"label column {_short(label_column)} is not a column name in the header of {path} "
                f"({width} columns)",
                field="label_column",
            )
        idx, has_header = first.index(label_column), True
    else:
        if not -width <= label_column < width:
            raise DatasetError(
                f"label_column {label_column} is out of range for {width} columns in {path}",
                field="label_column",
            )
        idx = label_column % width
        if any(not _is_number(c) for j, c in enumerate(first) if j != idx):
            has_header = True
        elif _is_number(first[idx]):
            has_header = False
        else:
            # Only the label cell is text: a header over numeric labels, or data with text labels.
            has_header = len(rows) > 1 and _is_number(rows[1][1][idx])
    data = rows[1:] if has_header else rows
    if not data:
        raise DatasetError(f"csv file {path} has a header but no data rows")

    feature_cols = [j for j in range(width) if j != idx]
    features: list[list[float]] = []
    labels: list[str] = []
    for line, cells in data:
        if len(cells) != width:
            raise DatasetError(f"csv file {path}: line {line} has {len(cells)} columns, expected {width}")
        try:
            values = [float(cells[j]) for j in feature_cols]
        except ValueError:
            j = next(j for j in feature_cols if not _is_number(cells[j]))
            raise DatasetError(
                f"csv file {path}: line {line}, column {j + 1} of {width}: a feature value is not a number"
            ) from None
        if not cells[idx]:
            raise DatasetError(f"csv file {path}: line {line} has an empty label")
        features.append(values)
        labels.append(cells[idx])
    x = np.array(features, dtype=np.float64)
    bad = np.argwhere(~np.isfinite(x))
    if bad.size:
        r, c = int(bad[0, 0]), feature_cols[int(bad[0, 1])]
        raise DatasetError(
            f"csv file {path}: line {data[r][0]}, column {c + 1} of {width}: a feature value is not finite"
        )
    return x, _csv_labels(labels)


def _short(value: object, limit: int = 40) -> str:
    """``repr(value)``, cut to ``limit`` characters: messages echo what the caller gave, briefly."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _csv_labels(labels: list[str]) -> NDArray[Any]:
    """Labels as integers when every cell is an integer (so they sort numerically), else strings."""
    try:
        return np.array([int(s) for s in labels], dtype=np.int64)
    except (ValueError, OverflowError):
        pass
    try:
        floats = [float(s) for s in labels]
    except ValueError:
        return np.array(labels, dtype=np.str_)
    if all(math.isfinite(v) and v.is_integer() for v in floats):
        return np.array(floats, dtype=np.float64).astype(np.int64)
    return np.array(labels, dtype=np.str_)


# --------------------------------------------------------------------------------------------
# Arguments and normalization
# --------------------------------------------------------------------------------------------


def _check_dtype(dtype: DTypeLike) -> np.dtype[np.floating]:
    try:
        resolved = np.dtype(dtype)
    except TypeError as exc:
        raise DatasetError(f"dtype must be float32 or float64, got {dtype!r}", field="dtype") from exc
    if resolved not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise DatasetError(f"dtype must be float32 or float64, got {resolved}", field="dtype")
    return resolved  # type: ignore[return-value]


def _check_fraction(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise DatasetError(f"{name} must be a number in [0, 1), got {value!r}", field=name)
    if not (math.isfinite(value) and 0 <= value < 1):
        raise DatasetError(f"{name} must be in [0, 1), got {value}", field=name)
    return float(value)


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise DatasetError(f"seed must be a non-negative integer, got {seed!r}", field="seed")
    return int(seed)


def _normalize(
    splits: tuple[NDArray[Any], NDArray[Any], NDArray[Any]],
    mode: str,
    pixel_max: float | None,
    dtype: np.dtype[np.floating],
) -> tuple[NDArray[np.floating], NDArray[np.floating], NDArray[np.floating]]:
    """Normalize the three feature splits with statistics of the first (train) one."""
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
    return (
        np.ascontiguousarray((train64 - mean) / std, dtype=dtype),
        np.ascontiguousarray((splits[1].astype(np.float64) - mean) / std, dtype=dtype),
        np.ascontiguousarray((splits[2].astype(np.float64) - mean) / std, dtype=dtype),
    )


def _cast3(
    splits: tuple[NDArray[Any], NDArray[Any], NDArray[Any]], dtype: np.dtype[np.floating]
) -> tuple[NDArray[np.floating], NDArray[np.floating], NDArray[np.floating]]:
    """Fresh C-contiguous copies in ``dtype`` (never views of the input)."""
    a, b, c = (s.astype(dtype, order="C", copy=True) for s in splits)
    return a, b, c
