"""Search spaces: validation, the u-space transform, and JSON for storage.

A space is an ordered ``dict[str, BaseDistribution]`` of Optuna distributions. Narrowing and sampling
work in *u-space*: ``log10`` of the value for log-scaled parameters, the value itself otherwise, so a
"width" means decades for a learning rate and units for a layer size.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
    json_to_distribution,
)

from ._errors import NarrowingError

__all__ = ["Space", "check_space", "space_from_json", "space_to_json"]

Space = dict[str, BaseDistribution]

# Version of the JSON layout of a space; bump it if the layout changes so old rows stay readable.
_SPACE_JSON_VERSION = 1

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
    """Serialize a space to plain JSON-able data.

    The parameters are stored as a *list* so their order survives databases that reorder object keys
    (PostgreSQL ``jsonb`` does); the order decides which random draw goes to which parameter.

    Args:
        space: The search space.

    Returns:
        ``{"version": 1, "params": [{"name": ..., "distribution": {...}}, ...]}`` where each
        distribution is Optuna's own JSON form (``optuna.distributions.distribution_to_json``).
    """
    checked = check_space(space)
    return {
        "version": _SPACE_JSON_VERSION,
        "params": [
            {"name": name, "distribution": json.loads(distribution_to_json(dist))}
            for name, dist in checked.items()
        ],
    }


def space_from_json(data: Mapping[str, Any]) -> Space:
    """Rebuild a space written by :func:`space_to_json`.

    Args:
        data: The JSON data (already parsed).

    Returns:
        The space, in its stored order.

    Raises:
        NarrowingError: If the data is not a space in the expected layout.
    """
    if not isinstance(data, Mapping) or data.get("version") != _SPACE_JSON_VERSION:
        raise NarrowingError(f"not a stored search space (version {_SPACE_JSON_VERSION} expected): {data!r}")
    params = data.get("params")
    if not isinstance(params, list):
        raise NarrowingError("stored search space: 'params' must be a list")
    space: Space = {}
    for i, item in enumerate(params):
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise NarrowingError(f"stored search space: params[{i}] must have a string 'name'")
        name = item["name"]
        if name in space:
            raise NarrowingError(f"stored search space: parameter {name!r} appears twice")
        try:
            space[name] = json_to_distribution(json.dumps(item.get("distribution")))
        except (ValueError, TypeError, KeyError) as exc:
            raise NarrowingError(f"stored search space: params[{i}] ({name}): {exc}") from exc
    return check_space(space, "stored search space")
