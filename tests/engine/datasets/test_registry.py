"""engine.datasets._registry: every kind is one registered DatasetKind, and the loader has no
kind of its own (a kind registered here loads through the same path checks, cache and splits)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

import engine
from engine import DatasetError
from engine.datasets import (
    DATASET_KINDS,
    KINDS,
    OPTION_DEFAULTS,
    DatasetKind,
    ReadOptions,
    _registry,
    load_arrays,
)


def test_the_registry_names_its_kinds() -> None:
    assert DATASET_KINDS == tuple(KINDS) == engine.DATASET_KINDS
    for name, kind in KINDS.items():
        assert kind.name == name
        assert kind.path in ("file", "directory", None)
        assert kind.options <= OPTION_DEFAULTS.keys()
    assert {name: kind.pixel_max for name, kind in KINDS.items()} == {
        "digits": 16.0,
        "mnist": 255.0,
        "npz": None,
        "csv": None,
    }
    assert load_arrays("digits")[2] == KINDS["digits"].pixel_max


def test_a_kind_with_an_unknown_option_is_a_registration_error() -> None:
    with pytest.raises(ValueError, match=r"dataset kind 'toy': unknown options \['delimiter'\]"):
        DatasetKind(name="toy", path="file", read=_read_toy, options=frozenset({"delimiter"}))


def _read_toy(files: Sequence[Path], options: ReadOptions) -> tuple[NDArray[Any], NDArray[Any]]:
    """One row per byte of the file: the byte as the feature, its parity as the label."""
    data = np.frombuffer(files[0].read_bytes(), dtype=np.uint8)
    return data.reshape(-1, 1), data % 2


def test_a_registered_kind_loads_like_the_others(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toy = DatasetKind(name="toy", path="file", read=_read_toy, pixel_max=255.0, suffixes=(".bin",))
    monkeypatch.setattr(_registry, "KINDS", {**KINDS, "toy": toy})
    path = tmp_path / "bytes.bin"
    path.write_bytes(bytes(range(100)))
    ds = engine.load_dataset("toy", path=path, test_fraction=0.0, val_fraction=0.5)
    assert ds.name == "bytes"
    assert ds.num_classes == 2
    assert ds.train.x.max() <= 99 / 255  # scaled by the kind's pixel maximum
    with pytest.raises(DatasetError, match="toy path is not a file"):
        engine.load_dataset("toy", path=tmp_path)
    with pytest.raises(DatasetError, match="label_column is not used for kind 'toy'") as info:
        engine.load_dataset("toy", path=path, label_column="y")
    assert info.value.field == "label_column"
