"""The stored form of a search space: one JSON layout, read and written here only.

``{"version": 1, "params": [{"name": ..., "distribution": {...}}, ...]}``, each distribution in
Optuna's own JSON form (``optuna.distributions.distribution_to_json``). The parameters are a *list*
so that their order survives databases that reorder object keys (PostgreSQL ``jsonb`` does): the
order decides which random draw goes to which parameter.

Two fronts use it and keep their own errors: :mod:`hpo.samplers` (``space_to_json`` /
``space_from_json``, :class:`~hpo.samplers.NarrowingError`) and :mod:`hpo.storage`
(``encode_space`` / ``decode_space``, :class:`~hpo.storage.StorageError`); both catch
:class:`SpaceJSONError`. This module imports nothing of hpo's, so either layer may import it, and
imports Optuna on first use only (``import hpo.storage`` must not load it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

__all__ = ["SPACE_JSON_VERSION", "SpaceJSONError", "space_from_data", "space_to_data"]

SPACE_JSON_VERSION = 1
"""Version of the layout; bump it if the layout changes, so that old rows stay readable."""


class SpaceJSONError(ValueError):
    """The data is not a stored search space (each front re-raises it as its own error)."""


def space_to_data(space: Mapping[str, BaseDistribution]) -> dict[str, Any]:
    """The stored layout of a space, as plain JSON-able data (no validation of the space).

    Args:
        space: Optuna distributions by parameter name, in order.

    Returns:
        ``{"version": 1, "params": [{"name": ..., "distribution": {...}}, ...]}``.
    """
    from optuna.distributions import distribution_to_json

    params = [
        {"name": name, "distribution": json.loads(distribution_to_json(dist))} for name, dist in space.items()
    ]
    return {"version": SPACE_JSON_VERSION, "params": params}


def space_from_data(data: Any, *, plain: bool = False) -> dict[str, BaseDistribution]:
    """Rebuild a space from the stored layout (already parsed from JSON), in its stored order.

    Args:
        data: What :func:`space_to_data` returned, after a trip through JSON.
        plain: Also read what storage has always accepted besides the layout: a plain
            ``{name: distribution}`` object (any object without both ``version`` and ``params``),
            and distributions given as JSON text rather than objects.

    Returns:
        Optuna distributions by parameter name (of any kind Optuna reads; the samplers check theirs).

    Raises:
        SpaceJSONError: The data is not a space: wrong version, ``params`` not a list, an entry
            without a string name, a name twice, or a distribution Optuna cannot read.
    """
    if not isinstance(data, Mapping):
        raise SpaceJSONError(f"not a JSON object: {data!r}")
    if plain and not ("version" in data and "params" in data):
        return {str(name): _distribution(value, str(name), plain) for name, value in data.items()}
    if data.get("version") != SPACE_JSON_VERSION:
        raise SpaceJSONError(f"layout version {SPACE_JSON_VERSION} expected, got {data.get('version')!r}")
    params = data.get("params")
    if not isinstance(params, list):
        raise SpaceJSONError("'params' must be a list")
    space: dict[str, BaseDistribution] = {}
    for i, item in enumerate(params):
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise SpaceJSONError(f"params[{i}] must have a string 'name'")
        name = item["name"]
        if name in space:
            raise SpaceJSONError(f"parameter {name!r} appears twice")
        space[name] = _distribution(item.get("distribution"), f"params[{i}] ({name})", plain)
    return space


def _distribution(value: Any, where: str, text_ok: bool) -> BaseDistribution:
    from optuna.distributions import json_to_distribution

    try:
        return json_to_distribution(value if text_ok and isinstance(value, str) else json.dumps(value))
    except (ValueError, TypeError, KeyError) as exc:
        raise SpaceJSONError(f"{where}: {exc}") from exc
