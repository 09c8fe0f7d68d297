"""engine.datasets._digits: scikit-learn's bundled digits, read without scikit-learn."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine import DatasetError
from engine.datasets import load_arrays, load_dataset


def test_digits_shape_classes_and_range() -> None:
    ds = load_dataset("digits")
    assert ds.name == "digits"
    assert sum(s.t.size for s in (ds.train, ds.val, ds.test)) == 1797
    assert ds.input_size == 64
    assert ds.num_classes == 10
    for split in (ds.train, ds.val, ds.test):
        assert split.x.dtype == np.float32
        assert split.t.dtype == np.int64
        assert split.x.flags.c_contiguous
        assert split.x.min() >= 0.0
        assert split.x.max() <= 1.0
    assert ds.train.x.max() == 1.0  # divided by 16, the pixel maximum
    assert set(np.unique(ds.train.t)) == set(range(10))


def test_digits_raw_arrays() -> None:
    x, t, pixel_max = load_arrays("digits")
    assert x.shape == (1797, 64)
    assert x.dtype == np.float64
    assert pixel_max == 16.0
    assert x.min() == 0.0
    assert x.max() == 16.0
    assert np.array_equal(x, np.round(x))
    assert np.array_equal(np.unique(t), np.arange(10))


def test_digits_does_not_import_sklearn() -> None:
    code = (
        "import sys, engine.datasets as d; d.load_dataset('digits'); "
        "bad = sorted({'sklearn', 'scipy', 'pandas'} & set(sys.modules)); assert not bad, bad"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_digits_rejects_a_path(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not used for kind 'digits'"):
        load_dataset("digits", path=tmp_path)
