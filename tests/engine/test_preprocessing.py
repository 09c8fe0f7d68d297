"""A network's preprocessing: the train split's normalization and the class labels, kept with it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine import (
    Checkpoint,
    CheckpointError,
    ConfigError,
    MultiLayerNet,
    Preprocessing,
    load_dataset,
    save_model,
)


@pytest.mark.parametrize("normalize", ["auto", "scale", "standardize", "none"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_applying_the_stored_normalization_to_raw_rows_gives_the_loaded_splits(
    normalize: str, dtype: Any
) -> None:
    data = load_dataset("digits", subset=500, seed=3, normalize=normalize, dtype=dtype)
    raw = load_dataset("digits", subset=500, seed=3, normalize="none", dtype=np.float64)
    prep = data.preprocessing
    assert prep is not None and prep.features == 64
    for split, raw_split in ((data.train, raw.train), (data.val, raw.val), (data.test, raw.test)):
        again = prep.apply(raw_split.x, dtype)
        assert again.dtype == np.dtype(dtype) and again.flags.c_contiguous
        np.testing.assert_array_equal(again, split.x)  # bit-identical: the same statistics
    assert (
        prep.mode
        == {"auto": "scale", "scale": "scale", "standardize": "standardize", "none": "none"}[normalize]
    )
    assert prep.classes == tuple(range(10))


def test_standardize_statistics_come_from_the_train_split_only(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(5.0, 3.0, size=(200, 3))
    x[:, 2] = 7.0  # a constant feature: std 1, never a division by zero
    y = np.array(["cat", "dog"] * 100)
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=y)
    data = load_dataset("npz", path=path, seed=1, dtype=np.float64)
    prep = data.preprocessing
    assert prep is not None and prep.mode == "standardize" and prep.mean is not None and prep.std is not None
    raw = load_dataset("npz", path=path, seed=1, normalize="none", dtype=np.float64)
    np.testing.assert_array_equal(prep.mean[:2], raw.train.x[:, :2].mean(axis=0))
    assert prep.std[2] == 1.0 and prep.mean[2] == 7.0
    assert prep.classes == ("cat", "dog") and prep.label(1) == "dog"


def test_it_round_trips_through_a_checkpoint_exactly() -> None:
    data = load_dataset("digits", subset=300, normalize="standardize")
    net = MultiLayerNet(64, [8], 10, rng=0)
    back = Checkpoint.from_bytes(save_model(net, data.preprocessing)).preprocessing
    assert back is not None and data.preprocessing is not None
    assert back.header() == data.preprocessing.header()
    assert back.mean is not None and data.preprocessing.mean is not None
    np.testing.assert_array_equal(back.mean, data.preprocessing.mean)  # floats survive JSON exactly
    assert Checkpoint.from_bytes(save_model(net)).preprocessing is None


def test_rows_of_another_width_are_refused() -> None:
    prep = Preprocessing("scale", 4, scale=2.0)
    with pytest.raises(ConfigError, match="4 features"):
        prep.apply(np.zeros((2, 3)))
    with pytest.raises(ConfigError, match="4 features"):
        prep.apply(np.zeros(4))
    np.testing.assert_array_equal(prep.apply(np.full((1, 4), 3.0)), np.full((1, 4), 1.5, dtype=np.float32))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda p: p.update(mode="zscore"), "mode"),
        (lambda p: p.update(features=True), "features"),
        (lambda p: p.update(scale=1.0), "scale"),
        (lambda p: p.update(mean=[0.0]), "mean"),
        (lambda p: p.update(std=[1.0] * 63 + [0.0]), "std"),
        (lambda p: p.update(std=[1.0] * 63 + ["x"]), "std"),
        (lambda p: p.update(classes=[True, 1]), "classes"),
        (lambda p: p.pop("classes"), "fields"),
        (lambda p: p.update(extra=1), "fields"),
    ],
)
def test_a_foreign_preprocessing_header_is_a_checkpoint_error(change: Any, match: str) -> None:
    data = load_dataset("digits", subset=300, normalize="standardize")
    assert data.preprocessing is not None
    header = json.loads(json.dumps(data.preprocessing.header()))
    change(header)
    with pytest.raises(CheckpointError, match=match):
        Preprocessing.from_header(header)


def test_a_checkpoint_with_preprocessing_still_builds_its_network() -> None:
    data = load_dataset("digits", subset=300)
    net = MultiLayerNet(64, [8], 10, rng=0)
    checkpoint = dataclasses.replace(Checkpoint.of_network(net), preprocessing=data.preprocessing)
    back = Checkpoint.from_bytes(checkpoint.to_bytes())
    x = data.test.x[:5]
    np.testing.assert_array_equal(back.build_network().predict_proba(x), net.predict_proba(x))
