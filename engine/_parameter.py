"""Trainable parameters: a value and the gradient of the loss with respect to it."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["Parameter"]


class Parameter:
    """One trainable array and its gradient buffer.

    Optimizers key their state by the ``Parameter`` object itself (identity hashing), so two
    parameters never share state even when their arrays happen to be equal.

    Attributes:
        name: Human-readable name such as ``"W1"`` (for reports, never for lookups).
        data: The value, updated in place by optimizers.
        grad: The gradient from the latest backward pass; written by the layer that owns the
            parameter and only read by optimizers.
        decay: Whether L2 weight decay applies (weights yes; biases and batch-norm shifts no).
    """

    __slots__ = ("data", "decay", "grad", "name")

    def __init__(self, name: str, data: NDArray[np.floating], *, decay: bool = False) -> None:
        self.name = name
        self.data = data
        self.grad = np.zeros_like(data)
        self.decay = decay

    def __repr__(self) -> str:
        return f"Parameter({self.name!r}, shape={self.data.shape}, dtype={self.data.dtype})"
