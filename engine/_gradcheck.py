"""Central-difference gradients, to check every analytic backward pass."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

__all__ = ["numerical_gradient", "relative_error"]

Array = NDArray[np.floating]


def numerical_gradient(f: Callable[[], float], x: Array, h: float = 1e-5) -> Array:
    """dF/dx by central differences, perturbing ``x`` in place one element at a time.

    ``f`` is called with no arguments and must read ``x`` (for example a closure over a
    network whose parameter array is ``x``). ``x`` is restored exactly after each probe.

    Args:
        f: The scalar function of ``x``.
        x: The array to differentiate with respect to (float64 for a meaningful check).
        h: Step size.
    """
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        orig = flat[i]
        flat[i] = orig + h
        f_plus = f()
        flat[i] = orig - h
        f_minus = f()
        flat[i] = orig
        gflat[i] = (f_plus - f_minus) / (2 * h)
    return grad


def relative_error(a: Array, b: Array) -> float:
    """``||a - b|| / (||a|| + ||b||)``: scale-free agreement of two gradients (0 when both are 0).

    A gradient that is exactly zero analytically (a bias in front of batch norm) has a numerical
    counterpart of pure rounding noise, which no relative measure can judge; check such arrays
    with an absolute bound instead.
    """
    denom = float(np.linalg.norm(a) + np.linalg.norm(b))
    return float(np.linalg.norm(a - b)) / denom if denom > 0 else 0.0
