"""The per-process cache of raw datasets.

A worker loads the same data for many trials, so raw arrays are kept, keyed by the kind, the
files' resolved paths, modification times and sizes (an edited file is read again), and the
options the kind reads. The cache's arrays are read-only; callers get views or copies.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from .._errors import DatasetError
from ._kind import DatasetKind, ReadOptions

__all__ = ["FileStamp", "Raw", "load_raw", "stamp"]

_CACHE_SIZE = 8


class FileStamp(NamedTuple):
    """A file and what identifies its current content (the cache key)."""

    path: str
    mtime_ns: int
    size: int


class Raw(NamedTuple):
    """Cached raw data: read-only features in their stored dtype, labels 0..k-1 and the label of
    each class index."""

    x: NDArray[Any]
    t: NDArray[np.int64]
    classes: tuple[int | str, ...]


def stamp(path: Path) -> FileStamp:
    """``path`` with its current modification time and size."""
    try:
        st = path.stat()
    except OSError as exc:
        raise DatasetError(f"cannot stat {path}: {exc}") from exc
    return FileStamp(str(path), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def load_raw(kind: DatasetKind, files: tuple[FileStamp, ...], options: ReadOptions) -> Raw:
    """Read a dataset from disk; cached, so every array it returns is made read-only."""
    paths = [Path(f.path) for f in files]
    x, labels = kind.read(paths, options)
    t, classes = _encode_labels(labels, files[0].path if len(files) == 1 else str(paths[0].parent))
    x.setflags(write=False)
    t.setflags(write=False)
    return Raw(x, t, classes)


def _encode_labels(labels: NDArray[Any], source: str) -> tuple[NDArray[np.int64], tuple[int | str, ...]]:
    """Map the sorted unique labels to 0..k-1 (returned with the label of each index); at least
    two classes are required."""
    classes, inverse = np.unique(labels, return_inverse=True)
    if classes.size < 2:
        raise DatasetError(f"{source}: need at least 2 classes, found {classes.size}")
    # Plain ints and strings (bytes labels of an npz file decoded), as JSON stores them.
    names = tuple(c.decode("utf-8", "replace") if isinstance(c, bytes) else c for c in classes.tolist())
    return np.ascontiguousarray(inverse.reshape(-1), dtype=np.int64), names
