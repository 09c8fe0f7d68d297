"""engine.datasets._npz: NumPy archives."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from engine import DatasetError
from engine.datasets import load_arrays, load_dataset


def test_npz_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 2, 3))
    y = np.array([3, 7, 9, 7] * 10)
    path = tmp_path / "blobs.npz"
    np.savez(path, x=x, y=y)
    raw_x, raw_t, pixel_max = load_arrays("npz", path=path)
    assert pixel_max is None
    assert np.array_equal(raw_x, x.reshape(40, 6))
    assert raw_t.tolist() == [0, 1, 2, 1] * 10
    ds = load_dataset("npz", path=path, normalize="none", test_fraction=0.25, val_fraction=0.2)
    assert ds.name == "blobs"
    assert ds.input_size == 6
    assert ds.num_classes == 3
    assert (ds.train.x.shape[0], ds.val.x.shape[0], ds.test.x.shape[0]) == (24, 6, 10)


def test_npz_fallback_keys(tmp_path: Path) -> None:
    path = tmp_path / "alt.npz"
    np.savez(path, X=np.arange(8.0).reshape(4, 2), labels=np.array([1, 0, 1, 0]))
    x, t, _ = load_arrays("npz", path=path)
    assert x.shape == (4, 2)
    assert t.tolist() == [1, 0, 1, 0]


def test_npz_missing_keys_names_the_expected_keys(tmp_path: Path) -> None:
    path = tmp_path / "wrong.npz"
    np.savez(path, features=np.zeros((4, 2)), y=np.array([0, 1, 0, 1]))
    with pytest.raises(DatasetError, match=r"needs a feature array \(x/X\).*it has 2 arrays") as info:
        load_arrays("npz", path=path)
    assert "features" not in str(info.value) and info.value.field == "path"


def test_npz_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.npz"
    with pytest.raises(DatasetError, match=re.escape(f"npz file not found: {missing}")):
        load_dataset("npz", path=missing)


def test_single_class_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "one.npz"
    np.savez(path, x=np.zeros((5, 2)), y=np.full(5, 4))
    with pytest.raises(DatasetError, match="at least 2 classes"):
        load_arrays("npz", path=path)
