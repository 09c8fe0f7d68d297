"""Search spaces: validation, the u-space transform, and JSON for storage (:mod:`hpo._space_json`).

A space is an ordered ``dict[str, BaseDistribution]`` of Optuna distributions. Narrowing and sampling
work in *u-space*: ``log10`` of the value for log-scaled parameters, the value itself otherwise, so a
"width" means decades for a learning rate and units for a layer size.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from .._space_json import SpaceJSONError, space_from_data, space_to_data
from ._errors import NarrowingError

__all__ = ["Space", "check_space", "space_from_json", "space_to_json"]

Space = dict[str, BaseDistribution]

NumericDistribution = FloatDistribution | IntDistribution


def check_space(space: Mapping[str, BaseDistribution], what: str = "space") -> Space:
    """Validate a search space and return it as a new ordered dict.

    Args:
        space: Parameter name to Optuna distribution.
        what: How to name the space in error messages.

    Returns:
        A shallow copy of ``space`` in the same order.

    Raises:
        NarrowingError: If ``space`` is not a mapping of names to Float/Int/Categorical distributions.
    """
    if not isinstance(space, Mapping):
        raise NarrowingError(f"{what} must be a mapping of parameter names to distributions, got {space!r}")
    out: Space = {}
    for name, dist in space.items():
        if not isinstance(name, str) or not name:
            raise NarrowingError(f"{what}: parameter names must be non-empty strings, got {name!r}")
        if not isinstance(dist, FloatDistribution | IntDistribution | CategoricalDistribution):
            raise NarrowingError(
                f"{what}.{name}: expected FloatDistribution, IntDistribution or CategoricalDistribution, "
                f"got {type(dist).__name__}"
            )
        out[name] = dist
    return out


def is_log(dist: BaseDistribution) -> bool:
    """Whether a distribution is sampled and narrowed on a log10 scale."""
    return isinstance(dist, FloatDistribution | IntDistribution) and bool(dist.log)


def to_u(value: float, log: bool) -> float:
    """Map a parameter value to u-space (``log10`` for log parameters)."""
    return math.log10(value) if log else float(value)


def from_u(u: float, log: bool) -> float:
    """Map a u-space coordinate back to a parameter value."""
    return 10.0**u if log else u


def u_window(dist: NumericDistribution) -> tuple[float, float]:
    """The ``(low, high)`` of a numeric distribution in u-space."""
    return to_u(dist.low, dist.log), to_u(dist.high, dist.log)


def space_to_json(space: Mapping[str, BaseDistribution]) -> dict[str, Any]:
    """Serialize a space to plain JSON-able data, in the stored layout of :mod:`hpo._space_json`.

    Args:
        space: The search space.

    Returns:
        ``{"version": 1, "params": [{"name": ..., "distribution": {...}}, ...]}`` where each
        distribution is Optuna's own JSON form (``optuna.distributions.distribution_to_json``).

    Raises:
        NarrowingError: If ``space`` is not a valid search space (:func:`check_space`).
    """
    return space_to_data(check_space(space))


def space_from_json(data: Mapping[str, Any]) -> Space:
    """Rebuild a space written by :func:`space_to_json`.

    Args:
        data: The JSON data (already parsed).

    Returns:
        The space, in its stored order.

    Raises:
        NarrowingError: If the data is not a space in the expected layout.
    """
    try:
        space = space_from_data(data)
    except SpaceJSONError as exc:
        raise NarrowingError(f"stored search space: {exc}") from exc
    return check_space(space, "stored search space")
