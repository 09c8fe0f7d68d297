"""Tests of engine._datasets: loading, splitting, normalization and the in-process cache."""

from __future__ import annotations

import gzip
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine._datasets import (
    DATASET_KINDS,
    Dataset,
    load_arrays,
    load_dataset,
    read_idx,
    split_arrays,
)
from engine._errors import DatasetError

MNIST_DIR = Path(__file__).resolve().parents[3] / "shared/data/mnist"
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


def all_rows(ds: Dataset) -> int:
    return ds.train.x.shape[0] + ds.val.x.shape[0] + ds.test.x.shape[0]


# ------------------------------------------------------------------------------------------------
# digits
# ------------------------------------------------------------------------------------------------


def test_digits_shape_classes_and_range() -> None:
    ds = load_dataset("digits")
    assert ds.name == "digits"
    assert all_rows(ds) == 1797
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
        "import sys, engine._datasets as d; d.load_dataset('digits'); "
        "bad = sorted({'sklearn', 'scipy', 'pandas'} & set(sys.modules)); assert not bad, bad"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_digits_rejects_a_path(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not used for kind 'digits'"):
        load_dataset("digits", path=tmp_path)


# ------------------------------------------------------------------------------------------------
# MNIST (real files, read in place)
# ------------------------------------------------------------------------------------------------


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
    assert all_rows(ds) == 10000
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


# ------------------------------------------------------------------------------------------------
# IDX files written here
# ------------------------------------------------------------------------------------------------


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


def test_path_required() -> None:
    for kind in ("mnist", "npz", "csv"):
        with pytest.raises(DatasetError, match=f"dataset path is required for kind '{kind}'"):
            load_dataset(kind)


def test_unknown_kind_lists_the_kinds() -> None:
    assert DATASET_KINDS == ("digits", "mnist", "npz", "csv")
    with pytest.raises(DatasetError, match=r"unknown dataset kind 'cifar'.*digits, mnist, npz, csv"):
        load_dataset("cifar")


# ------------------------------------------------------------------------------------------------
# npz
# ------------------------------------------------------------------------------------------------


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


# ------------------------------------------------------------------------------------------------
# CSV
# ------------------------------------------------------------------------------------------------

IRIS_LIKE = """\
sepal,species,petal
5.1,setosa,1.4
7.0,versicolor,4.7
6.3,virginica,6.0
4.9,setosa,1.3
6.4,versicolor,4.5
5.8,virginica,5.1
"""


def test_csv_header_string_labels_by_name(tmp_path: Path) -> None:
    path = tmp_path / "iris.csv"
    path.write_text(IRIS_LIKE)
    x, t, pixel_max = load_arrays("csv", path=path, label_column="species")
    assert pixel_max is None
    assert x.tolist() == [[5.1, 1.4], [7.0, 4.7], [6.3, 6.0], [4.9, 1.3], [6.4, 4.5], [5.8, 5.1]]
    assert t.tolist() == [0, 1, 2, 0, 1, 2]  # sorted names: setosa, versicolor, virginica
    ds = load_dataset("csv", path=path, label_column="species", test_fraction=0.0, val_fraction=0.0)
    assert ds.name == "iris"
    assert ds.num_classes == 3
    assert ds.input_size == 2


def test_csv_label_by_index_matches_by_name(tmp_path: Path) -> None:
    path = tmp_path / "iris.csv"
    path.write_text(IRIS_LIKE)
    by_name = load_arrays("csv", path=path, label_column="species")
    for index in (1, -2):
        by_index = load_arrays("csv", path=path, label_column=index)
        assert np.array_equal(by_index[0], by_name[0])
        assert np.array_equal(by_index[1], by_name[1])


def test_csv_without_header_integer_labels_sort_numerically(tmp_path: Path) -> None:
    path = tmp_path / "plain.csv"
    path.write_text("1,2,10\n3,4,9\n5,6,10\n7,8,-1\n")
    x, t, _ = load_arrays("csv", path=path)
    assert x.tolist() == [[1, 2], [3, 4], [5, 6], [7, 8]]
    assert t.tolist() == [2, 1, 2, 0]  # -1 < 9 < 10


def test_csv_without_header_string_labels(tmp_path: Path) -> None:
    path = tmp_path / "plain.csv"
    path.write_text("1.5,cat\n2.5,dog\n3.5,cat\n")
    x, t, _ = load_arrays("csv", path=path)
    assert x.tolist() == [[1.5], [2.5], [3.5]]  # the first row is data, not a header
    assert t.tolist() == [0, 1, 0]


def test_csv_bad_cell_names_row_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("a,b,label\n1,2,x\n3,oops,y\n")
    with pytest.raises(
        DatasetError, match=r"bad\.csv: line 3, column 2 of 3: a feature value is not a number"
    ):
        load_arrays("csv", path=path)


def test_csv_unknown_label_name(tmp_path: Path) -> None:
    path = tmp_path / "iris.csv"
    path.write_text(IRIS_LIKE)
    with pytest.raises(DatasetError, match="label column 'kind' is not a column name in the header") as info:
        load_arrays("csv", path=path, label_column="kind")
    assert info.value.field == "label_column"
    with pytest.raises(DatasetError, match="label_column 5 is out of range"):
        load_arrays("csv", path=path, label_column=5)


SECRET = "hunter2-s3cr3t"


@pytest.mark.parametrize(
    "text",
    [
        f"user,password,label\nalice,{SECRET},1\nbob,{SECRET},0\n",  # text cells
        f"{SECRET}:x:0:0:root:/root:/bin/bash\n",  # /etc/passwd: one column
        f"a,{SECRET}\n1,2\n3\n",  # ragged, under a header holding the secret
        f"a,b,label\n1,nan,{SECRET}\n2,3,{SECRET}\n",  # non-finite value
        f"a,b,label\n1,2,{SECRET}\n2,3,{SECRET}\n",  # one class
        f"a,b,{SECRET}\n1,2,0\n3,4,1\n",  # label column by a name the header does not have
        f"{SECRET},b,label\n1,2,0\n3,4,1\n5\n",  # ragged, with the label named
    ],
)
def test_csv_errors_never_quote_the_file(tmp_path: Path, text: str) -> None:
    """A dataset error may become a trial's stored reason: it names lines and columns, not cells."""
    path = tmp_path / "data.csv"
    path.write_text(text)
    with pytest.raises(DatasetError) as info:
        load_dataset("csv", path=path, label_column="label" if "," in text.split("\n")[0] else -1)
    assert SECRET not in str(info.value)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"subset": 100_000}, "subset"),
        ({"val_fraction": 1.5}, "val_fraction"),
        ({"test_fraction": -0.1}, "test_fraction"),
        ({"seed": -1}, "seed"),
        ({"normalize": "zscore"}, "normalize"),
        ({"dtype": "int8"}, "dtype"),
    ],
)
def test_argument_errors_name_their_argument(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(DatasetError) as info:
        load_dataset("digits", **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


# ------------------------------------------------------------------------------------------------
# Splitting
# ------------------------------------------------------------------------------------------------


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


# ------------------------------------------------------------------------------------------------
# Normalization and dtype
# ------------------------------------------------------------------------------------------------


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


# ------------------------------------------------------------------------------------------------
# Cache
# ------------------------------------------------------------------------------------------------


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
