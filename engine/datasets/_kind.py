"""What a dataset kind is: the entry each kind registers (see :mod:`engine.datasets._registry`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from numpy.typing import NDArray

__all__ = ["OPTION_DEFAULTS", "DatasetKind", "ReadOptions", "Reader", "the_path"]


@dataclass(frozen=True, slots=True)
class ReadOptions:
    """Options that only some kinds take; each kind's :attr:`DatasetKind.options` names the ones
    it reads. The others keep their defaults (they are part of the cache key).

    Attributes:
        label_column: Index (negative counts from the end) or header name of a CSV label column.
    """

    label_column: str | int = -1


OPTION_DEFAULTS: dict[str, object] = {f.name: f.default for f in fields(ReadOptions)}
"""Every option of :class:`ReadOptions` and its default."""

Reader = Callable[[Sequence[Path], ReadOptions], tuple[NDArray[Any], NDArray[Any]]]
"""Reads the located files: features ``(n, features)`` and raw labels ``(n,)`` (any values; they
are mapped to ``0..k-1`` afterwards)."""


def the_path(path: Path | None) -> tuple[Path, ...]:
    """The files of a kind whose path is one file: that file."""
    assert path is not None, "the loader locates the files of path kinds only with their path"
    return (path,)


@dataclass(frozen=True, slots=True)
class DatasetKind:
    """One kind of dataset source, as registered in :data:`engine.datasets.KINDS`.

    Attributes:
        name: The kind's name (``dataset.kind`` in a study file).
        path: What the ``path`` argument must be: an existing ``"file"`` or ``"directory"``, or
            None when the kind takes no path.
        read: Reads the data from the located files.
        locate: The files that hold the data, given the checked path (None for kinds without a
            path); their modification times and sizes key the cache.
        options: The :class:`ReadOptions` fields the reader uses; any other option given a value
            other than its default is refused.
        pixel_max: The largest possible feature value of an image set, which ``normalize: auto``
            and ``scale`` divide by; None standardizes under ``auto``.
        suffixes: Dropped, in order, from a file's name to name the dataset (kinds whose path is a
            file; the others are named after the kind).
    """

    name: str
    path: Literal["file", "directory"] | None
    read: Reader
    locate: Callable[[Path | None], Sequence[Path]] = the_path
    options: frozenset[str] = field(default_factory=frozenset)
    pixel_max: float | None = None
    suffixes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = sorted(self.options - OPTION_DEFAULTS.keys())
        if unknown:  # a registration mistake, caught when the registry is built
            raise ValueError(f"dataset kind {self.name!r}: unknown options {unknown}")
