"""What a network's inputs and outputs mean: the feature normalization it was trained with (the
train split's statistics) and its class labels.

A network trained on normalized features predicts garbage on raw ones, and its class indices
``0..k-1`` stand for the sorted unique labels of its data. :class:`Preprocessing` keeps both with
the network (a checkpoint's ``preprocessing``), so predictions apply the same statistics as
training, never recomputed ones, and name the labels as the data did.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._errors import CheckpointError, ConfigError

__all__ = ["Preprocessing"]

_MODES = ("none", "scale", "standardize")
_FIELDS = ("mode", "features", "scale", "mean", "std", "classes")


@dataclass(frozen=True, slots=True, eq=False)
class Preprocessing:
    """The normalization of a network's features and the labels of its classes.

    Attributes:
        mode: ``"none"``, ``"scale"`` (divide by ``scale``) or ``"standardize"`` (subtract
            ``mean``, divide by ``std``, per feature), as resolved from a dataset's ``normalize``.
        features: Features per row.
        scale: The divisor of ``scale`` (None otherwise).
        mean: Per-feature means of the train split (``standardize`` only), float64.
        std: Per-feature standard deviations of the train split (``standardize`` only; 1 for a
            constant feature), float64.
        classes: The label of each class index (the sorted unique labels of the data), or None
            when unknown.
    """

    mode: str
    features: int
    scale: float | None = None
    mean: NDArray[np.float64] | None = None
    std: NDArray[np.float64] | None = None
    classes: tuple[int | str, ...] | None = None

    @classmethod
    def fit(
        cls,
        train: NDArray[Any],
        mode: str,
        pixel_max: float | None,
        classes: Sequence[int | str] | None = None,
    ) -> Preprocessing:
        """The normalization ``mode`` computes from the train split's features ``train``.

        Args:
            train: Train features ``(n, features)``.
            mode: ``auto`` (``scale`` when ``pixel_max`` is known, ``standardize`` otherwise),
                ``scale``, ``standardize`` or ``none``.
            pixel_max: The kind's largest possible value, or None (``scale`` then divides by the
                largest absolute train value).
            classes: The label of each class index.
        """
        features = int(train.shape[1]) if train.ndim == 2 else 0
        labels = None if classes is None else tuple(classes)
        if mode == "auto":
            mode = "scale" if pixel_max is not None else "standardize"
        if mode == "none":
            return cls("none", features, classes=labels)
        if mode == "scale":
            if pixel_max is None:
                peak = float(np.max(np.abs(train))) if train.size else 0.0
                pixel_max = peak if peak > 0 and math.isfinite(peak) else 1.0
            return cls("scale", features, scale=float(pixel_max), classes=labels)
        train64 = train.astype(np.float64)
        mean = train64.mean(axis=0)
        std = train64.std(axis=0)
        constant = np.ptp(train64, axis=0) == 0
        mean[constant] = train64[0, constant]
        std[constant] = 1.0
        return cls("standardize", features, mean=mean, std=std, classes=labels)

    def apply(self, x: ArrayLike, dtype: np.dtype[Any] | type = np.float32) -> NDArray[np.floating]:
        """``x`` normalized as the train split was: a fresh C-contiguous array in ``dtype``.

        Raises:
            ConfigError: ``x`` is not a 2-D array of ``features`` columns.
        """
        arr = np.asarray(x)
        if arr.ndim != 2 or arr.shape[1] != self.features:
            raise ConfigError(f"expected rows of {self.features} features, got an array of shape {arr.shape}")
        out_dtype = np.dtype(dtype)
        if self.mode == "standardize":
            assert self.mean is not None and self.std is not None
            standardized = (np.asarray(arr, dtype=np.float64) - self.mean) / self.std
            return np.ascontiguousarray(standardized, dtype=out_dtype)
        out = arr.astype(out_dtype, order="C", copy=True)
        if self.mode == "scale":
            out /= self.scale
        return out

    def label(self, index: int) -> int | str:
        """The label of class ``index`` (the index itself when the labels are unknown)."""
        return int(index) if self.classes is None else self.classes[int(index)]

    def header(self) -> dict[str, Any]:
        """The JSON data of a checkpoint's ``preprocessing`` (floats round-trip exactly)."""
        return {
            "mode": self.mode,
            "features": self.features,
            "scale": self.scale,
            "mean": None if self.mean is None else [float(v) for v in self.mean],
            "std": None if self.std is None else [float(v) for v in self.std],
            "classes": None if self.classes is None else list(self.classes),
        }

    @classmethod
    def from_header(cls, data: Any) -> Preprocessing:
        """Read :meth:`header`'s data back.

        Raises:
            CheckpointError: It is not what :meth:`header` writes.
        """
        where = "checkpoint header: preprocessing"
        if not isinstance(data, dict) or set(data) != set(_FIELDS):
            raise CheckpointError(f"{where} must be an object with fields {sorted(_FIELDS)}")
        mode, features, scale = data["mode"], data["features"], data["scale"]
        if mode not in _MODES:
            raise CheckpointError(f"{where}.mode must be one of {', '.join(_MODES)}, got {mode!r}")
        if not isinstance(features, int) or isinstance(features, bool) or features < 0:
            raise CheckpointError(f"{where}.features must be an int >= 0, got {features!r}")
        if (scale is not None) != (mode == "scale") or not (scale is None or _positive(scale)):
            raise CheckpointError(f"{where}.scale must be a number > 0 with mode scale only, got {scale!r}")
        arrays = [_floats(data[k], features, f"{where}.{k}", mode == "standardize") for k in ("mean", "std")]
        mean, std = arrays
        if std is not None and not (std > 0).all():
            raise CheckpointError(f"{where}.std must be > 0")
        classes = data["classes"]
        if classes is not None and not (
            isinstance(classes, list)
            and all(isinstance(c, int | str) and not isinstance(c, bool) for c in classes)
        ):
            raise CheckpointError(f"{where}.classes must be a list of ints or strings")
        labels = None if classes is None else tuple(classes)
        return cls(mode, features, None if scale is None else float(scale), mean, std, labels)


def _positive(value: Any) -> bool:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return number and math.isfinite(value) and value > 0


def _floats(value: Any, n: int, where: str, required: bool) -> NDArray[np.float64] | None:
    """A JSON list of ``n`` finite numbers as float64, or None (which must be when not ``required``)."""
    if value is None and not required:
        return None
    ok = isinstance(value, list) and len(value) == n
    ok = ok and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    array = np.array(value, dtype=np.float64) if ok else None
    if array is None or not required or not np.isfinite(array).all():
        expected = f"a list of {n} finite numbers" if required else "null"
        raise CheckpointError(f"{where} must be {expected}")
    return array
