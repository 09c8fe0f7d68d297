"""Seeded Optuna samplers by name, so narrowing can be compared with Optuna's own on one study.

The names are :mod:`hpo.search`'s strategies: each kind says how it runs as an Optuna sampler.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler

from ..search import UnknownStrategyError, get_strategy, strategy_names
from ._errors import SamplerError
from ._narrowing import HardBounds, NarrowingRule

__all__ = ["SAMPLER_NAMES", "make_sampler"]

SAMPLER_NAMES = strategy_names()
"""Names :func:`make_sampler` accepts (the registered search strategies)."""


def make_sampler(
    name: str,
    *,
    seed: int,
    stages: Sequence[int] | int | None = None,
    space: Mapping[str, BaseDistribution] | None = None,
    rule: NarrowingRule | None = None,
    hard_bounds: HardBounds | None = None,
) -> BaseSampler:
    """Build a seeded sampler.

    Args:
        name: A search strategy (:func:`hpo.search.strategy_names`): ``narrowing``
            (:class:`NarrowingSampler`), ``random`` (``RandomSampler``), ``tpe``
            (``TPESampler(multivariate=True, constant_liar=True)``: joint modelling of the
            parameters, and running trials count as provisional results so parallel workers spread
            out), ``cmaes`` (``CmaEsSampler``; needs the ``cmaes`` package).
        seed: Seed of the sampler.
        stages: Trials per stage, or a total split as a study file's ``search.trials`` is
            (narrowing only; ``NarrowingSampler``'s default if omitted).
        space: Stage-0 space (narrowing only).
        rule: Narrowing rule (narrowing only).
        hard_bounds: Hard bounds (narrowing only).

    The narrowing options are ignored by the other samplers, so that one study description can
    be run with each sampler for a comparison.

    Raises:
        SamplerError: If the name is unknown or the sampler's optional dependency is missing.
    """
    try:
        strategy = get_strategy(name)
    except UnknownStrategyError as exc:
        raise SamplerError(str(exc)) from None
    options = {"space": space, "stages": stages, "rule": rule, "hard_bounds": hard_bounds}
    return strategy.optuna_sampler(seed, **{k: v for k, v in options.items() if v is not None})
