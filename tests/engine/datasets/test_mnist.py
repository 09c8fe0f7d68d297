"""engine.datasets._mnist: MNIST directories of IDX files (the real ones, and files written here)."""

from __future__ import annotations

import gzip
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from engine import DatasetError
from engine.datasets import load_arrays, load_dataset, read_idx

MNIST_DIR = Path(__file__).resolve().parents[4] / "shared/data/mnist"
MNIST_CLASS_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]

needs_mnist = pytest.mark.skipif(not MNIST_DIR.is_dir(), reason=f"MNIST test files not found at {MNIST_DIR}")


def write_idx(path: Path, array: np.ndarray, *, magic: int | None = None, gz: bool = False) -> Path:
    """Write ``array`` as an IDX file of unsigned bytes (the real MNIST header layout)."""
    data = np.asarray(array, dtype=np.uint8)
    if magic is None:
        magic = 0x0800 | data.ndim
    blob = struct.pack(">I", magic) + struct.pack(f">{data.ndim}I", *data.shape) + data.tobytes()
    path.write_bytes(gzip.compress(blob) if gz else blob)
    return path


@needs_mnist
def test_mnist_real_files_raw() -> None:
    x, t, pixel_max = load_arrays("mnist", path=MNIST_DIR)
    assert x.shape == (10000, 784)
    assert pixel_max == 255.0
    assert x.min() == 0.0
    assert x.max() == 255.0
    assert np.bincount(t).tolist() == MNIST_CLASS_COUNTS


@needs_mnist
def test_mnist_auto_normalize_to_unit_range() -> None:
    ds = load_dataset("mnist", path=MNIST_DIR, test_fraction=0.0, val_fraction=0.1)
    assert sum(s.t.size for s in (ds.train, ds.val, ds.test)) == 10000
    assert ds.input_size == 784
    assert ds.num_classes == 10
    assert ds.test.x.shape == (0, 784)
    assert ds.train.x.min() == 0.0
    assert ds.train.x.max() == 1.0
    assert ds.val.x.min() >= 0.0
    assert ds.val.x.max() <= 1.0
    counts = np.bincount(ds.train.t, minlength=10) + np.bincount(ds.val.t, minlength=10)
    assert counts.tolist() == MNIST_CLASS_COUNTS


@needs_mnist
def test_mnist_500_subset_protocol() -> None:
    ds = load_dataset("mnist", path=MNIST_DIR, subset=500, val_fraction=0.2, test_fraction=0.2, seed=3)
    assert ds.train.x.shape == (400, 784)
    assert ds.val.x.shape == (100, 784)
    assert ds.test.x.shape == (2000, 784)
    assert ds.train.t.shape == (400,)
    assert ds.num_classes == 10


@needs_mnist
def test_read_idx_real_gz_files() -> None:
    images = read_idx(MNIST_DIR / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(MNIST_DIR / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28)
    assert images.dtype == np.uint8
    assert labels.shape == (10000,)
    assert np.bincount(labels).tolist() == MNIST_CLASS_COUNTS


@needs_mnist
def test_mnist_loaded_copies_do_not_touch_the_cache() -> None:
    x, _, _ = load_arrays("mnist", path=MNIST_DIR)
    x[:] = -1.0
    again, _, _ = load_arrays("mnist", path=MNIST_DIR)
    assert again.min() == 0.0


def small_images(n: int, offset: int = 0) -> np.ndarray:
    return ((np.arange(n * 4 * 3).reshape(n, 4, 3) + offset) % 256).astype(np.uint8)


def test_read_idx_plain_and_gz_agree(tmp_path: Path) -> None:
    images = small_images(5)
    plain = read_idx(write_idx(tmp_path / "plain-idx3-ubyte", images))
    packed = read_idx(write_idx(tmp_path / "packed-idx3-ubyte.gz", images, gz=True))
    assert plain.dtype == np.uint8
    assert plain.shape == (5, 4, 3)
    assert np.array_equal(plain, images)
    assert np.array_equal(packed, images)
    plain[0, 0, 0] = 99  # the result is the caller's own array


def test_mnist_directory_of_plain_and_gz_pairs(tmp_path: Path) -> None:
    # train pair plain, t10k pair gzip: both are loaded, train first.
    write_idx(tmp_path / "train-images-idx3-ubyte", small_images(6), magic=2051)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([0, 1, 2, 0, 1, 2]), magic=2049)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", small_images(3, offset=100), magic=2051, gz=True)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([2, 2, 1]), magic=2049, gz=True)
    x, t, pixel_max = load_arrays("mnist", path=tmp_path)
    assert pixel_max == 255.0
    assert x.shape == (9, 12)
    expected = np.concatenate([small_images(6), small_images(3, offset=100)]).reshape(9, 12)
    assert np.array_equal(x, expected)
    assert t.tolist() == [0, 1, 2, 0, 1, 2, 2, 2, 1]


def test_mnist_labels_are_remapped_when_classes_are_missing(tmp_path: Path) -> None:
    write_idx(tmp_path / "t10k-images-idx3-ubyte", small_images(4), magic=2051)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([3, 7, 3, 9]), magic=2049)
    _, t, _ = load_arrays("mnist", path=tmp_path)
    assert t.tolist() == [0, 1, 0, 2]


def test_truncated_idx_is_rejected_with_its_name(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "cut-idx3-ubyte", small_images(5))
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(DatasetError, match=r"truncated.*cut-idx3-ubyte"):
        read_idx(path)
    header_only = tmp_path / "header-idx3-ubyte"
    header_only.write_bytes(b"\x00\x00\x08\x03\x00\x00")
    with pytest.raises(DatasetError, match=r"truncated.*header-idx3-ubyte"):
        read_idx(header_only)
    with pytest.raises(DatasetError, match=r"IDX file not found: .*absent-idx1-ubyte"):
        read_idx(tmp_path / "absent-idx1-ubyte")


def test_truncated_gz_idx_is_rejected_with_its_name(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "cut-idx3-ubyte.gz", small_images(50), gz=True)
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DatasetError, match=r"truncated gzip IDX file .*cut-idx3-ubyte\.gz"):
        read_idx(path)


def test_bad_magic_in_mnist_directory(tmp_path: Path) -> None:
    # An images file carrying the labels magic number (2049).
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros(4), magic=2049)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([0, 1, 0, 1]), magic=2049)
    with pytest.raises(DatasetError, match=r"bad magic number 2049 .*t10k-images-idx3-ubyte.*expected 2051"):
        load_arrays("mnist", path=tmp_path)


def test_read_idx_rejects_non_idx(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"hello world, not an IDX file")
    with pytest.raises(DatasetError, match=r"not an IDX file.*notes\.txt"):
        read_idx(path)


def test_mnist_count_mismatch(tmp_path: Path) -> None:
    write_idx(tmp_path / "t10k-images-idx3-ubyte", small_images(4), magic=2051)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([0, 1, 0]), magic=2049)
    with pytest.raises(DatasetError, match=r"4 images but .*t10k-labels-idx1-ubyte has 3 labels"):
        load_arrays("mnist", path=tmp_path)


def test_mnist_missing_directory_and_files(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError, match=re.escape(f"mnist directory not found: {missing}")):
        load_dataset("mnist", path=missing)
    with pytest.raises(
        DatasetError, match=r"no MNIST IDX files in .*t10k-images-idx3-ubyte.*t10k-labels-idx1-ubyte"
    ):
        load_dataset("mnist", path=tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte", small_images(2), magic=2051)
    with pytest.raises(DatasetError, match="no matching train-labels-idx1-ubyte"):
        load_dataset("mnist", path=tmp_path)
