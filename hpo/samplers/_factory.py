"""Seeded Optuna samplers by name, so narrowing can be compared with Optuna's own on one study."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence

from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, CmaEsSampler, RandomSampler, TPESampler

from ._errors import SamplerError
from ._narrowing import HardBounds, NarrowingRule
from ._sampler import NarrowingSampler

__all__ = ["SAMPLER_NAMES", "make_sampler"]

SAMPLER_NAMES = ("narrowing", "random", "tpe", "cmaes")
"""Names :func:`make_sampler` accepts."""


def make_sampler(
    name: str,
    *,
    seed: int,
    stages: Sequence[int] | None = None,
    space: Mapping[str, BaseDistribution] | None = None,
    rule: NarrowingRule | None = None,
    hard_bounds: HardBounds | None = None,
) -> BaseSampler:
    """Build a seeded sampler.

    Args:
        name: One of :data:`SAMPLER_NAMES`: ``narrowing`` (:class:`NarrowingSampler`), ``random``
            (``RandomSampler``), ``tpe`` (``TPESampler(multivariate=True, constant_liar=True)``:
            joint modelling of the parameters, and running trials count as provisional results so
            parallel workers spread out), ``cmaes`` (``CmaEsSampler``; needs the ``cmaes`` package).
        seed: Seed of the sampler.
        stages: Trials per stage (narrowing only; ``NarrowingSampler``'s default if omitted).
        space: Stage-0 space (narrowing only).
        rule: Narrowing rule (narrowing only).
        hard_bounds: Hard bounds (narrowing only).

    The narrowing options are ignored by the other samplers, so that one study description can
    be run with each sampler for a comparison.

    Raises:
        SamplerError: If the name is unknown or the sampler's optional dependency is missing.
    """
    if name == "narrowing":
        return NarrowingSampler(
            space=space,
            stages=(20, 20, 10) if stages is None else stages,
            rule=rule,
            seed=seed,
            hard_bounds=hard_bounds,
        )
    if name == "random":
        return RandomSampler(seed=seed)
    if name == "tpe":
        return TPESampler(seed=seed, multivariate=True, constant_liar=True)
    if name == "cmaes":
        # Optuna imports `cmaes` lazily and would fail only at the second trial; fail here instead.
        if importlib.util.find_spec("cmaes") is None:
            raise SamplerError("sampler 'cmaes' needs the 'cmaes' package: pip install cmaes")
        return CmaEsSampler(seed=seed)
    raise SamplerError(f"unknown sampler {name!r}; expected one of {', '.join(SAMPLER_NAMES)}")
