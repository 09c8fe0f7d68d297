"""Datasets for classification: load, split into train/val/test, normalize.

Four kinds of source are registered (:data:`KINDS`, one module each):

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

A new kind is a module defining a :class:`DatasetKind` (its reader, whether its path is a file or
a directory, the options it takes, its pixel maximum) and its line in ``_registry.py``.
"""

from __future__ import annotations

from ._kind import OPTION_DEFAULTS, DatasetKind, ReadOptions
from ._load import load_arrays, load_dataset
from ._mnist import read_idx
from ._normalize import NORMALIZE_MODES
from ._registry import DATASET_KINDS, KINDS
from ._split import split_arrays
from ._types import Dataset, Split

__all__ = [
    "DATASET_KINDS",
    "KINDS",
    "NORMALIZE_MODES",
    "OPTION_DEFAULTS",
    "Dataset",
    "DatasetKind",
    "ReadOptions",
    "Split",
    "load_arrays",
    "load_dataset",
    "read_idx",
    "split_arrays",
]
