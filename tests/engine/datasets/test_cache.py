"""engine.datasets._cache: read-only cached arrays, re-read when a file changes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from engine.datasets import load_arrays, load_dataset


def test_cache_returns_equal_read_only_data(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("1,2,0\n3,4,1\n5,6,0\n")
    x1, t1, _ = load_arrays("csv", path=path)
    x2, t2, _ = load_arrays("csv", path=path)
    assert np.array_equal(x1, x2)
    assert np.array_equal(t1, t2)
    assert np.shares_memory(x1, x2)  # served from the cache, not re-read
    with pytest.raises(ValueError, match="read-only"):
        x1[0, 0] = 99.0
    with pytest.raises(ValueError, match="read-only"):
        t1[0] = 5
    with pytest.raises(ValueError):
        x1.setflags(write=True)
    assert load_arrays("csv", path=path)[0][0, 0] == 1.0


def test_cache_sees_edited_files(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("1,2,0\n3,4,1\n")
    assert load_arrays("csv", path=path)[0][0, 0] == 1.0
    stat = path.stat()
    path.write_text("10,2,0\n3,4,1\n5,5,1\n")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert load_arrays("csv", path=path)[0][0, 0] == 10.0


def test_load_dataset_arrays_are_the_callers_own() -> None:
    first = load_dataset("digits", normalize="none", dtype=np.float64)
    first.train.x[:] = -5.0
    first.train.t[:] = 0
    second = load_dataset("digits", normalize="none", dtype=np.float64)
    assert second.train.x.min() == 0.0
    assert len(np.unique(second.train.t)) == 10
