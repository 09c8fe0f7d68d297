"""engine.datasets._normalize: statistics from the train split only, and the output dtype."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine import DatasetError
from engine.datasets import load_arrays, load_dataset, split_arrays


@pytest.fixture
def skewed_npz(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.normal(5.0, 3.0, 200), rng.exponential(10.0, 200), np.full(200, 7.0)])
    x[::7, 0] += 100.0  # outliers wherever the seed puts them
    # Column 2 is constant on the train rows (seed 2) but not on the test rows.
    (_, _), (_, _), (test_rows, _) = split_arrays(np.arange(200), np.zeros(200, dtype=np.int64), seed=2)
    x[test_rows, 2] = 9.0
    path = tmp_path / "skewed.npz"
    np.savez(path, x=x, y=np.arange(200) % 4)
    return path


def test_standardize_uses_train_statistics_only(skewed_npz: Path) -> None:
    raw_x, raw_t, _ = load_arrays("npz", path=skewed_npz)
    (x_tr, _), (x_va, _), (x_te, _) = split_arrays(raw_x, raw_t, seed=2)
    mean, std = x_tr.mean(axis=0), x_tr.std(axis=0)
    mean[2], std[2] = 7.0, 1.0  # constant column: std 0 -> 1
    for normalize in ("auto", "standardize"):
        ds = load_dataset("npz", path=skewed_npz, seed=2, normalize=normalize, dtype=np.float64)
        assert np.allclose(ds.train.x, (x_tr - mean) / std)
        assert np.allclose(ds.val.x, (x_va - mean) / std)
        assert np.allclose(ds.test.x, (x_te - mean) / std)
        assert np.allclose(ds.train.x[:, :2].mean(axis=0), 0.0)
        assert np.allclose(ds.train.x[:, :2].std(axis=0), 1.0)
        assert np.all(ds.train.x[:, 2] == 0.0)
        assert np.all(ds.test.x[:, 2] == 2.0)  # (9 - 7) / 1
        # statistics of all rows would differ: the val/test splits are not standardized by themselves
        assert not np.allclose(ds.val.x[:, 1].mean(), 0.0, atol=1e-6)


def test_scale_divides_by_train_max_for_npz(skewed_npz: Path) -> None:
    raw_x, raw_t, _ = load_arrays("npz", path=skewed_npz)
    (x_tr, _), (x_va, _), _ = split_arrays(raw_x, raw_t, seed=2)
    peak = np.abs(x_tr).max()
    ds = load_dataset("npz", path=skewed_npz, seed=2, normalize="scale", dtype=np.float64)
    assert np.allclose(ds.train.x, x_tr / peak)
    assert np.allclose(ds.val.x, x_va / peak)
    assert np.abs(ds.train.x).max() == 1.0


def test_image_sets_can_be_standardized_or_left_raw() -> None:
    raw = load_dataset("digits", normalize="none")
    assert raw.train.x.max() == 16.0
    standard = load_dataset("digits", normalize="standardize", dtype=np.float64)
    assert np.allclose(standard.train.x.mean(axis=0), 0.0)


def test_dtype_default_and_float64() -> None:
    default = load_dataset("digits", subset=100)
    wide = load_dataset("digits", subset=100, dtype=np.float64)
    for ds, dtype in ((default, np.float32), (wide, np.float64)):
        for split in (ds.train, ds.val, ds.test):
            assert split.x.dtype == dtype
            assert split.x.flags.c_contiguous
            assert split.t.dtype == np.int64
    assert np.allclose(default.train.x, wide.train.x)


def test_bad_dtype_and_normalize() -> None:
    with pytest.raises(DatasetError, match="dtype must be float32 or float64"):
        load_dataset("digits", dtype=np.int32)
    with pytest.raises(DatasetError, match="normalize must be one of"):
        load_dataset("digits", normalize="minmax")
