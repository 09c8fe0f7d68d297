"""``mnist``: a directory of the standard MNIST IDX files (plain or ``.gz``), and IDX reading."""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from .._errors import DatasetError
from ._kind import DatasetKind, ReadOptions

__all__ = ["MNIST", "read_idx"]

_PREFIXES = ("train", "t10k")
_IMAGES_MAGIC = 2051
_LABELS_MAGIC = 2049
_UBYTE = 0x08
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | os.PathLike[str]) -> NDArray[np.uint8]:
    """Read one IDX file of unsigned bytes (plain or gzip-compressed, detected from its content).

    Args:
        path: The file.

    Returns:
        A fresh array shaped as the header declares.

    Raises:
        DatasetError: The file is missing, truncated, not IDX, or not of unsigned bytes.
    """
    return _read_idx(Path(os.fspath(path))).copy()


def _find_variant(directory: Path, name: str) -> Path | None:
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _locate(directory: Path | None) -> list[Path]:
    """The (images, labels) pairs present in ``directory``, train first, as a flat list."""
    assert directory is not None, "mnist is registered as a directory kind"
    files: list[Path] = []
    for prefix in _PREFIXES:
        images_name, labels_name = f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"
        images = _find_variant(directory, images_name)
        labels = _find_variant(directory, labels_name)
        if images is not None and labels is not None:
            files += (images, labels)
        elif images is not None:
            raise DatasetError(f"{images} has no matching {labels_name}[.gz] in {directory}")
        elif labels is not None:
            raise DatasetError(f"{labels} has no matching {images_name}[.gz] in {directory}")
    if not files:
        expected = ", ".join(f"{p}-images-idx3-ubyte + {p}-labels-idx1-ubyte" for p in _PREFIXES)
        raise DatasetError(f"no MNIST IDX files in {directory}: expected {expected} (each optionally .gz)")
    return files


def _read(paths: Sequence[Path], _options: ReadOptions) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    """Read and concatenate (images, labels) pairs given as a flat list."""
    xs: list[NDArray[np.uint8]] = []
    ts: list[NDArray[np.uint8]] = []
    shapes: list[tuple[int, ...]] = []
    for images_path, labels_path in zip(paths[::2], paths[1::2], strict=True):
        images = _read_idx(images_path, _IMAGES_MAGIC)
        labels = _read_idx(labels_path, _LABELS_MAGIC)
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


def _read_idx(path: Path, expected_magic: int | None = None) -> NDArray[np.uint8]:
    """Read an IDX file of unsigned bytes as a read-only array (a view of the file's bytes)."""
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
    if blob[2] != _UBYTE:
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
    return np.frombuffer(blob, dtype=np.uint8, offset=offset).reshape(dims)


MNIST = DatasetKind(name="mnist", path="directory", read=_read, locate=_locate, pixel_max=255.0)
