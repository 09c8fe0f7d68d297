"""Layers, each with its forward and backward pass side by side.

Every layer works on 2-D batches ``(N, features)`` in the dtype of its input. A layer caches what
its backward pass needs during a training forward pass only; evaluation passes cache nothing, so
scoring a large validation split costs no extra memory. No backward pass edits the gradient it
receives: each returns a new array.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import cast

import numpy as np
from numpy.typing import NDArray

from ._parameter import Parameter

__all__ = [
    "Affine",
    "BatchNorm",
    "Dropout",
    "Layer",
    "LossLayer",
    "ReLU",
    "Sigmoid",
    "SoftmaxWithLoss",
    "SquaredErrorLoss",
    "Tanh",
    "cross_entropy_error",
    "softmax",
    "sum_squared_error",
]

Array = NDArray[np.floating]
Labels = NDArray[np.integer]


class Layer(ABC):
    """A differentiable map from one batch to another."""

    params: tuple[Parameter, ...] = ()

    @abstractmethod
    def forward(self, x: Array, train: bool = False) -> Array:
        """Compute the layer's output; in training mode, remember what backward needs."""

    @abstractmethod
    def backward(self, dout: Array) -> Array:
        """Given dL/d(output) of the latest training forward pass, return dL/d(input)."""


class Affine(Layer):
    """``out = x @ W + b``.

    Args:
        W: Weights of shape ``(in, out)``; L2 weight decay applies to them.
        b: Bias of shape ``(out,)``.
        input_grad: Whether backward computes dL/dx. The first layer of a network sets it to
            ``False``: nothing consumes the gradient of the data, and it is the largest GEMM.
        name: Suffix of the parameter names (``W1``, ``b1``).
    """

    def __init__(self, W: Array, b: Array, *, input_grad: bool = True, name: str = "") -> None:
        self.W = Parameter(f"W{name}", W, decay=True)
        self.b = Parameter(f"b{name}", b)
        self.params = (self.W, self.b)
        self.input_grad = input_grad
        self._x: Array | None = None
        self._ones: Array = np.ones(0, dtype=W.dtype)

    def forward(self, x: Array, train: bool = False) -> Array:
        if train:
            self._x = x
        out = x @ self.W.data
        out += self.b.data
        return out

    def backward(self, dout: Array) -> Array:
        assert self._x is not None, "backward before a training forward pass"
        np.matmul(self._x.T, dout, out=self.W.grad)
        # The bias gradient is the column sum of dout; as a GEMV with a ones vector it runs
        # about 3x faster than an axis-0 reduction at these sizes.
        n = dout.shape[0]
        if self._ones.shape[0] != n or self._ones.dtype != dout.dtype:
            self._ones = np.ones(n, dtype=dout.dtype)
        np.matmul(self._ones, dout, out=self.b.grad)
        if not self.input_grad:
            return np.empty((0,), dtype=dout.dtype)
        return dout @ self.W.data.T


class ReLU(Layer):
    """``out = max(x, 0)``; the gradient passes where the input was positive."""

    def __init__(self) -> None:
        self._mask: NDArray[np.bool_] | None = None

    def forward(self, x: Array, train: bool = False) -> Array:
        # x * (x > 0) rather than np.maximum(x, 0): faster here, and the mask is what backward needs.
        mask = x > 0
        if train:
            self._mask = mask
        return np.multiply(x, mask, dtype=x.dtype)

    def backward(self, dout: Array) -> Array:
        assert self._mask is not None, "backward before a training forward pass"
        # A multiply by the boolean mask, not a masked assignment into dout: one pass, no copy
        # of dout, and the incoming gradient stays untouched.
        return np.multiply(dout, self._mask, dtype=dout.dtype)


class Sigmoid(Layer):
    """``out = 1 / (1 + exp(-x))``, computed as ``(1 + tanh(x/2)) / 2`` so it never overflows."""

    def __init__(self) -> None:
        self._out: Array | None = None

    def forward(self, x: Array, train: bool = False) -> Array:
        out = np.tanh(x * 0.5)
        out += 1
        out *= 0.5
        if train:
            self._out = out
        return out

    def backward(self, dout: Array) -> Array:
        assert self._out is not None, "backward before a training forward pass"
        y = self._out
        return dout * y * (1 - y)


class Tanh(Layer):
    """``out = tanh(x)``."""

    def __init__(self) -> None:
        self._out: Array | None = None

    def forward(self, x: Array, train: bool = False) -> Array:
        out = np.tanh(x)
        if train:
            self._out = out
        return out

    def backward(self, dout: Array) -> Array:
        assert self._out is not None, "backward before a training forward pass"
        y = self._out
        return dout * (1 - y * y)


class BatchNorm(Layer):
    """Batch normalization over the batch axis, with a learned scale and shift.

    Training mode normalizes with the batch's statistics and folds them into running averages;
    evaluation mode normalizes with the running averages.

    Args:
        size: Number of features.
        dtype: Parameter dtype.
        momentum: Weight of the old running average in each update.
        eps: Added to the variance before the square root.
        name: Suffix of the parameter names (``gamma1``, ``beta1``) and of the running statistics
            names in a network's state (``running_mean1``, ``running_var1``).
    """

    def __init__(
        self,
        size: int,
        dtype: np.dtype[np.floating] | type[np.floating] = np.float32,
        *,
        momentum: float = 0.9,
        eps: float = 1e-5,
        name: str = "",
    ) -> None:
        self.gamma = Parameter(f"gamma{name}", np.ones(size, dtype=dtype))
        self.beta = Parameter(f"beta{name}", np.zeros(size, dtype=dtype))
        self.params = (self.gamma, self.beta)
        self.name = name
        self.momentum = momentum
        self.eps = eps
        self.running_mean = np.zeros(size, dtype=dtype)
        self.running_var = np.ones(size, dtype=dtype)
        self._xn: Array | None = None
        self._inv_std: Array | None = None

    def forward(self, x: Array, train: bool = False) -> Array:
        if train:
            mu = x.mean(axis=0)
            xc = x - mu
            var = np.mean(xc * xc, axis=0)
            inv_std = 1 / np.sqrt(var + self.eps)
            xn = xc * inv_std
            m = self.momentum
            self.running_mean *= m
            self.running_mean += (1 - m) * mu
            self.running_var *= m
            self.running_var += (1 - m) * var
            self._xn, self._inv_std = xn, inv_std
        else:
            xn = (x - self.running_mean) / np.sqrt(self.running_var + self.eps)
        return xn * self.gamma.data + self.beta.data

    def backward(self, dout: Array) -> Array:
        assert self._xn is not None and self._inv_std is not None, "backward before a training forward pass"
        xn, n = self._xn, dout.shape[0]
        np.sum(dout, axis=0, out=self.beta.grad)
        np.sum(xn * dout, axis=0, out=self.gamma.grad)
        dxn = dout * self.gamma.data
        # dL/dx = (1/N) * inv_std * (N*dxn - sum(dxn) - xn * sum(dxn*xn)), the three paths through
        # x, the batch mean and the batch variance.
        dx = dxn * n
        dx -= dxn.sum(axis=0)
        dx -= xn * np.sum(dxn * xn, axis=0)
        dx *= self._inv_std / n
        return dx


class Dropout(Layer):
    """Inverted dropout: in training, zero each unit with probability ``rate`` and scale the
    survivors by ``1/(1-rate)``, so evaluation is the identity.

    Args:
        rate: Probability of dropping a unit, in ``[0, 1)``.
        rng: The generator the masks come from (a child of the trial's seed).
    """

    def __init__(self, rate: float, rng: np.random.Generator) -> None:
        if not 0 <= rate < 1:
            raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
        self.rate = rate
        self.rng = rng
        self._mask: Array | None = None

    def forward(self, x: Array, train: bool = False) -> Array:
        if not train:
            return x  # evaluation caches nothing, as in every layer
        if self.rate == 0:
            self._mask = None
            return x
        keep = self.rng.random(x.shape, dtype=x.dtype) >= self.rate
        self._mask = keep * x.dtype.type(1 / (1 - self.rate))
        return x * self._mask

    def backward(self, dout: Array) -> Array:
        if self._mask is None:
            return dout
        return dout * self._mask


# ---------------------------------------------------------------------------------------------
# Losses


def softmax(x: Array) -> Array:
    """Row-wise softmax, shifted by the row maximum so ``exp`` never overflows."""
    z = x - x.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    return z


def _as_labels(t: NDArray[np.generic]) -> Labels:
    """Accept class indices ``(N,)`` or one-hot rows ``(N, C)``; return class indices."""
    return cast("Labels", t.argmax(axis=1) if t.ndim == 2 else t)


def cross_entropy_error(y: Array, t: NDArray[np.generic]) -> float:
    """Batch-mean cross-entropy of probabilities ``y`` against labels or one-hot rows ``t``."""
    y2 = y.reshape(1, -1) if y.ndim == 1 else y
    labels = _as_labels(t.reshape(1, -1) if t.ndim == 1 and t.size == y2.shape[1] else t)
    n = y2.shape[0]
    tiny = np.finfo(y2.dtype).tiny
    return float(-np.sum(np.log(y2[np.arange(n), labels] + tiny)) / n)


def sum_squared_error(y: Array, t: NDArray[np.generic]) -> float:
    """Batch-mean of ``0.5 * sum((y - onehot(t))**2)`` over each row."""
    y2 = y.reshape(1, -1) if y.ndim == 1 else y
    t2 = t.reshape(1, -1) if t.ndim == 1 and t.size == y2.shape[1] else t
    onehot = cast("Array", t2 if t2.ndim == 2 else np.eye(y2.shape[1], dtype=y2.dtype)[t2])
    d = y2 - onehot
    return float(0.5 * np.vdot(d, d) / y2.shape[0])


class LossLayer(ABC):
    """The last layer: scores and targets in, a scalar batch-mean loss out, and its gradient back."""

    def __init__(self) -> None:
        self._cache: tuple[Array, Labels] | None = None

    @abstractmethod
    def _loss(self, x: Array, labels: Labels) -> tuple[float, Array]:
        """Return the batch-mean loss and the softmax probabilities of ``x``."""

    @abstractmethod
    def _grad(self, y: Array, labels: Labels) -> Array:
        """Return dL/dx from the probabilities and labels of the latest forward pass."""

    def value(self, x: Array, t: NDArray[np.generic]) -> float:
        """The loss of a batch, caching nothing (for evaluation passes)."""
        return self._loss(x, _as_labels(t))[0]

    def forward(self, x: Array, t: NDArray[np.generic]) -> float:
        """The loss of a batch; remembers what :meth:`backward` needs."""
        labels = _as_labels(t)
        loss, y = self._loss(x, labels)
        self._cache = (y, labels)
        return loss

    def backward(self) -> Array:
        """dL/dx for the latest :meth:`forward`."""
        assert self._cache is not None, "backward before forward"
        return self._grad(*self._cache)


def _minus_onehot(y: Array, labels: Labels) -> Array:
    """``y - onehot(labels)`` as a new array."""
    d = y.copy()
    d[np.arange(y.shape[0]), labels] -= 1
    return d


class SoftmaxWithLoss(LossLayer):
    """Softmax then cross-entropy, fused: the gradient is ``(softmax(x) - onehot(t)) / N``.

    The loss is computed as ``logsumexp(x) - x[t]`` on the max-shifted scores, which stays finite
    for any finite input (no ``log(0)``).
    """

    def _loss(self, x: Array, labels: Labels) -> tuple[float, Array]:
        n = x.shape[0]
        z = x - x.max(axis=1, keepdims=True)
        e = np.exp(z)
        s = e.sum(axis=1)
        # mean(log(s) - z[t]), as two sums: fewer NumPy calls on these small arrays.
        loss = (float(np.log(s).sum()) - float(z[np.arange(n), labels].sum())) / n
        e /= s[:, None]
        return loss, e

    def _grad(self, y: Array, labels: Labels) -> Array:
        dx = _minus_onehot(y, labels)
        dx *= dx.dtype.type(1 / y.shape[0])
        return dx


class SquaredErrorLoss(LossLayer):
    """Softmax then the sum of squared errors against one-hot targets, averaged over the batch."""

    def _loss(self, x: Array, labels: Labels) -> tuple[float, Array]:
        y = softmax(x)
        d = _minus_onehot(y, labels)
        return float(0.5 * np.vdot(d, d) / x.shape[0]), y

    def _grad(self, y: Array, labels: Labels) -> Array:
        g = _minus_onehot(y, labels)
        g *= g.dtype.type(1 / y.shape[0])  # dL/dy
        # Through the softmax Jacobian: dx_i = y_i * (g_i - sum_j g_j y_j).
        return y * (g - np.sum(g * y, axis=1, keepdims=True))
