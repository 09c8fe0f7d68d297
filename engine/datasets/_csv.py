"""``csv``: a CSV file of numbers with one label column, optionally with a header row.

Messages name lines (1-based, as the file counts them, blank lines included) and columns (1-based,
"column 2 of 3"), never the cells: a file may hold secrets, and a message may be stored.
"""

from __future__ import annotations

import csv
import gzip
import math
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from .._errors import DatasetError
from ._kind import DatasetKind, ReadOptions

__all__ = ["CSV"]


class _Row(NamedTuple):
    line: int
    cells: list[str]


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _short(value: object, limit: int = 40) -> str:
    """``repr(value)``, cut to ``limit`` characters: messages echo what the caller gave, briefly."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _read_rows(path: Path) -> list[_Row]:
    """The file's non-blank rows, cells stripped."""
    try:
        opener = gzip.open if path.name.endswith(".gz") else open
        rows: list[_Row] = []
        with opener(path, "rt", encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            for row in reader:
                cells = [c.strip() for c in row]
                if any(cells):  # blank lines are skipped
                    rows.append(_Row(reader.line_num, cells))
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"cannot read csv file {path}: {exc}") from exc
    if not rows:
        raise DatasetError(f"csv file {path} is empty")
    return rows


def _label_index(path: Path, first: list[str], label_column: str | int) -> int:
    """The 0-based index of the label column, by header name or by (negative) index."""
    width = len(first)
    if isinstance(label_column, str):
        if label_column not in first:
            raise DatasetError(
                f"label column {_short(label_column)} is not a column name in the header of {path} "
                f"({width} columns)",
                field="label_column",
            )
        return first.index(label_column)
    if not -width <= label_column < width:
        raise DatasetError(
            f"label_column {label_column} is out of range for {width} columns in {path}",
            field="label_column",
        )
    return label_column % width


def _has_header(rows: list[_Row], idx: int) -> bool:
    """Whether the first row names the columns (for a label column given by index)."""
    first = rows[0].cells
    if any(not _is_number(c) for j, c in enumerate(first) if j != idx):
        return True
    if _is_number(first[idx]):
        return False
    # Only the label cell is text: a header over numeric labels, or data with text labels.
    second = rows[1].cells if len(rows) > 1 else []
    return idx < len(second) and _is_number(second[idx])  # a short second row is reported later


def _parse_row(path: Path, row: _Row, idx: int, width: int) -> tuple[list[float], str]:
    """One data row's feature values and label cell."""
    if len(row.cells) != width:
        raise DatasetError(f"csv file {path}: line {row.line} has {len(row.cells)} columns, expected {width}")
    features = [c for j, c in enumerate(row.cells) if j != idx]
    try:
        values = [float(c) for c in features]
    except ValueError:
        j = next(j for j, c in enumerate(row.cells) if j != idx and not _is_number(c))
        raise DatasetError(
            f"csv file {path}: line {row.line}, column {j + 1} of {width}: a feature value is not a number"
        ) from None
    if not row.cells[idx]:
        raise DatasetError(f"csv file {path}: line {row.line} has an empty label")
    return values, row.cells[idx]


def _check_finite(path: Path, x: NDArray[np.float64], data: list[_Row], idx: int, width: int) -> None:
    bad = np.argwhere(~np.isfinite(x))
    if bad.size:
        r, c = int(bad[0, 0]), int(bad[0, 1])
        column = c + 1 if c < idx else c + 2  # back to the file's columns: skip the label column
        raise DatasetError(
            f"csv file {path}: line {data[r].line}, column {column} of {width}: a feature value is not finite"
        )


def _labels(cells: list[str]) -> NDArray[Any]:
    """Labels as integers when every cell is an integer (so they sort numerically), else strings."""
    try:
        return np.array([int(s) for s in cells], dtype=np.int64)
    except (ValueError, OverflowError):
        pass
    try:
        floats = [float(s) for s in cells]
    except ValueError:
        return np.array(cells, dtype=np.str_)
    if all(math.isfinite(v) and v.is_integer() for v in floats):
        return np.array(floats, dtype=np.float64).astype(np.int64)
    return np.array(cells, dtype=np.str_)


def _read(files: Sequence[Path], options: ReadOptions) -> tuple[NDArray[np.float64], NDArray[Any]]:
    """Read features and raw labels from a CSV file."""
    path, label_column = files[0], options.label_column
    rows = _read_rows(path)
    width = len(rows[0].cells)
    if width < 2:
        raise DatasetError(f"csv file {path} needs at least 2 columns (features and a label), found {width}")
    idx = _label_index(path, rows[0].cells, label_column)
    has_header = isinstance(label_column, str) or _has_header(rows, idx)
    data = rows[1:] if has_header else rows
    if not data:
        raise DatasetError(f"csv file {path} has a header but no data rows")
    parsed = [_parse_row(path, row, idx, width) for row in data]
    x = np.array([values for values, _ in parsed], dtype=np.float64)
    _check_finite(path, x, data, idx, width)
    return x, _labels([label for _, label in parsed])


CSV = DatasetKind(
    name="csv", path="file", read=_read, options=frozenset({"label_column"}), suffixes=(".gz", ".csv")
)
