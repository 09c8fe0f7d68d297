"""Splitting rows into train, validation and test with one seeded permutation."""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from .._errors import DatasetError

__all__ = ["split_arrays"]

_ScalarT = TypeVar("_ScalarT", bound=np.generic)
_Pair = tuple[NDArray[_ScalarT], NDArray[np.int64]]


def split_arrays(
    x: NDArray[_ScalarT],
    t: NDArray[np.integer],
    *,
    subset: int | None = None,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> tuple[_Pair[_ScalarT], _Pair[_ScalarT], _Pair[_ScalarT]]:
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
    n = _rows(x, t)
    val_fraction = _check_fraction("val_fraction", val_fraction)
    test_fraction = _check_fraction("test_fraction", test_fraction)
    rng = np.random.default_rng(_check_seed(seed))
    n_test, m, n_val = _sizes(n, subset, val_fraction, test_fraction)

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


def _rows(x: NDArray[np.generic], t: NDArray[np.integer]) -> int:
    """The number of rows of matching, non-empty ``x`` and 1-D ``t``."""
    if x.ndim < 1 or t.ndim != 1 or x.shape[0] != t.shape[0]:
        raise DatasetError(
            f"x and t need the same number of rows with t 1-D, got shapes {x.shape} and {t.shape}"
        )
    if x.shape[0] == 0:
        raise DatasetError("cannot split an empty dataset")
    return int(x.shape[0])


def _sizes(n: int, subset: int | None, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """``(n_test, m, n_val)``: test rows, kept non-test rows, and validation rows of those."""
    n_test = round(test_fraction * n)
    rest = n - n_test
    if rest < 1:
        raise DatasetError(
            f"test_fraction={test_fraction} leaves no rows for training out of {n}", field="test_fraction"
        )
    m = rest if subset is None else _check_subset(subset, rest)
    n_val = round(val_fraction * m)
    if m - n_val < 1:
        raise DatasetError(
            f"val_fraction={val_fraction} leaves no training rows out of {m}", field="val_fraction"
        )
    return n_test, m, n_val


def _check_subset(subset: int, rest: int) -> int:
    if isinstance(subset, bool) or not isinstance(subset, int | np.integer):
        raise DatasetError(f"subset must be an integer or None, got {subset!r}", field="subset")
    if not 2 <= subset <= rest:
        raise DatasetError(
            f"subset must be between 2 and {rest} (rows left after the test split), got {subset}",
            field="subset",
        )
    return int(subset)


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
