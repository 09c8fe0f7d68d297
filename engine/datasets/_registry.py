"""The registry of dataset kinds: every kind :func:`~engine.load_dataset` knows, in one place.

A kind is a module defining one :class:`~engine.datasets.DatasetKind` (its reader, what its path
is, the options it takes, its pixel maximum); adding a kind is adding that module and its line
here. ``hpo.spec`` keeps its own copy of the names, paths and options (it must not import NumPy);
``tests/hpo/test_dataset_kinds.py`` checks that the two agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from .._errors import DatasetError
from ._csv import CSV
from ._digits import DIGITS
from ._kind import DatasetKind
from ._mnist import MNIST
from ._npz import NPZ

__all__ = ["DATASET_KINDS", "KINDS", "get_kind"]

KINDS: Mapping[str, DatasetKind] = MappingProxyType({k.name: k for k in (DIGITS, MNIST, NPZ, CSV)})
"""Every dataset kind by name, in the order messages list them."""

DATASET_KINDS: tuple[str, ...] = tuple(KINDS)
"""The names of the dataset kinds."""


def get_kind(name: object) -> DatasetKind:
    """The registered kind called ``name``.

    Raises:
        DatasetError: No kind has that name (``field="kind"``).
    """
    kind = KINDS.get(name) if isinstance(name, str) else None
    if kind is None:
        raise DatasetError(
            f"unknown dataset kind {name!r}; expected one of: {', '.join(DATASET_KINDS)}", field="kind"
        )
    return kind
