"""engine.datasets._csv: CSV files, with or without a header, and messages that never quote them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine import DatasetError
from engine.datasets import load_arrays, load_dataset

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


def test_csv_short_second_row_under_a_text_label_is_reported(tmp_path: Path) -> None:
    # Only the label cell of the first row is text, so the second row decides whether the first is
    # a header; a second row too short to have a label cell used to raise IndexError.
    path = tmp_path / "short.csv"
    path.write_text("1,2,cat,4\n5\n")
    with pytest.raises(DatasetError, match=r"short\.csv: line 2 has 1 columns, expected 4"):
        load_arrays("csv", path=path, label_column=2)
