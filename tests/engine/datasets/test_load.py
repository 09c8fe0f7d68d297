"""engine.datasets._load: arguments, paths and options are checked against the kind."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine import DatasetError
from engine.datasets import DATASET_KINDS, load_arrays, load_dataset


def test_path_required() -> None:
    for kind in ("mnist", "npz", "csv"):
        with pytest.raises(DatasetError, match=f"dataset path is required for kind '{kind}'"):
            load_dataset(kind)


def test_unknown_kind_lists_the_kinds() -> None:
    assert DATASET_KINDS == ("digits", "mnist", "npz", "csv")
    with pytest.raises(DatasetError, match=r"unknown dataset kind 'cifar'.*digits, mnist, npz, csv"):
        load_dataset("cifar")


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


@pytest.mark.parametrize("kind", ["digits", "mnist", "npz"])
def test_label_column_is_refused_by_kinds_without_one(kind: str, tmp_path: Path) -> None:
    for value in (0, "label"):
        with pytest.raises(
            DatasetError, match=f"label_column is not used for kind '{kind}' .only for csv"
        ) as info:
            load_dataset(kind, label_column=value)
        assert info.value.field == "label_column"


def test_the_default_label_column_is_every_kinds(tmp_path: Path) -> None:
    assert load_arrays("digits", label_column=-1)[0].shape == (1797, 64)
    for kind in ("mnist", "npz"):  # past the options, to the path
        with pytest.raises(DatasetError, match=f"{kind} .* not found") as info:
            load_arrays(kind, path=tmp_path / "absent", label_column=-1)
        assert info.value.field == "path"


def test_a_path_must_be_what_the_kind_reads(tmp_path: Path) -> None:
    a_file = tmp_path / "data.csv"
    a_file.write_text("1,0\n2,1\n")
    with pytest.raises(DatasetError, match=re.escape(f"mnist path is not a directory: {a_file}")) as info:
        load_dataset("mnist", path=a_file)
    assert info.value.field == "path"
    for kind in ("npz", "csv"):
        with pytest.raises(DatasetError, match=re.escape(f"{kind} path is not a file: {tmp_path}")):
            load_dataset(kind, path=tmp_path)
    with pytest.raises(DatasetError, match=re.escape(f"csv file not found: {tmp_path / 'nope.csv'}")):
        load_dataset("csv", path=tmp_path / "nope.csv")
