"""engine.datasets._split: one seeded permutation behind train, validation and test."""

from __future__ import annotations

import numpy as np
import pytest

from engine import DatasetError
from engine.datasets import load_arrays, load_dataset, split_arrays


def index_data(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows that carry their own original index, so splits can be traced back."""
    return np.arange(n, dtype=np.float64).reshape(n, 1), np.arange(n) % 3


def test_split_sizes_and_disjointness() -> None:
    x, t = index_data(100)
    (x_tr, t_tr), (x_va, t_va), (x_te, t_te) = split_arrays(
        x, t, val_fraction=0.25, test_fraction=0.2, seed=5
    )
    assert (len(x_tr), len(x_va), len(x_te)) == (60, 20, 20)
    rows = [set(a[:, 0].astype(int).tolist()) for a in (x_tr, x_va, x_te)]
    assert not rows[0] & rows[1]
    assert not rows[0] & rows[2]
    assert not rows[1] & rows[2]
    assert rows[0] | rows[1] | rows[2] == set(range(100))
    # labels travel with their rows
    for xs, ts in ((x_tr, t_tr), (x_va, t_va), (x_te, t_te)):
        assert np.array_equal(ts, xs[:, 0].astype(int) % 3)
        assert ts.dtype == np.int64


def test_split_is_deterministic_per_seed() -> None:
    x, t = index_data(200)
    first = split_arrays(x, t, subset=50, seed=11)
    second = split_arrays(x, t, subset=50, seed=11)
    other = split_arrays(x, t, subset=50, seed=12)
    for (xa, ta), (xb, tb) in zip(first, second, strict=True):
        assert np.array_equal(xa, xb)
        assert np.array_equal(ta, tb)
    assert not np.array_equal(first[0][0], other[0][0])
    assert not np.array_equal(first[2][0], other[2][0])


def test_test_split_does_not_depend_on_subset_or_val_fraction() -> None:
    x, t = index_data(300)
    reference = split_arrays(x, t, test_fraction=0.3, seed=4)[2][0]
    assert len(reference) == 90
    for subset, val_fraction in ((None, 0.5), (20, 0.2), (210, 0.0), (2, 0.4)):
        (x_tr, _), (x_va, _), (x_te, _) = split_arrays(
            x, t, subset=subset, val_fraction=val_fraction, test_fraction=0.3, seed=4
        )
        assert np.array_equal(x_te, reference)
        assert not set(x_te[:, 0].tolist()) & (set(x_tr[:, 0].tolist()) | set(x_va[:, 0].tolist()))


def test_subset_protocol_sizes() -> None:
    x, t = index_data(10000)
    (x_tr, _), (x_va, _), (x_te, _) = split_arrays(x, t, subset=500, val_fraction=0.2, test_fraction=0.2)
    assert (len(x_tr), len(x_va), len(x_te)) == (400, 100, 2000)


def test_zero_test_fraction_gives_empty_test_split() -> None:
    x, t = index_data(10)
    _, _, (x_te, t_te) = split_arrays(x, t, test_fraction=0.0)
    assert x_te.shape == (0, 1)
    assert t_te.shape == (0,)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"val_fraction": -0.1}, "val_fraction"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"test_fraction": float("nan")}, "test_fraction"),
        ({"subset": 1}, "subset"),
        ({"subset": 9}, "subset"),  # only 8 rows left after a 20% test split of 10
        ({"subset": 2, "val_fraction": 0.9}, "val_fraction"),
        ({"test_fraction": 0.96}, "test_fraction"),
    ],
)
def test_split_argument_errors_name_the_field(kwargs: dict[str, float], field: str) -> None:
    x, t = index_data(10)
    with pytest.raises(DatasetError, match=field):
        split_arrays(x, t, **kwargs)  # type: ignore[arg-type]


def test_load_dataset_splits_follow_split_arrays() -> None:
    raw_x, raw_t, _ = load_arrays("digits")
    ds = load_dataset("digits", subset=300, seed=9, normalize="none", dtype=np.float64)
    (x_tr, t_tr), (x_va, t_va), (x_te, t_te) = split_arrays(raw_x, raw_t, subset=300, seed=9)
    for split, (xs, ts) in zip(
        (ds.train, ds.val, ds.test), ((x_tr, t_tr), (x_va, t_va), (x_te, t_te)), strict=True
    ):
        assert np.array_equal(split.x, xs)
        assert np.array_equal(split.t, ts)
    assert (len(ds.train.t), len(ds.val.t), len(ds.test.t)) == (240, 60, 359)
