"""Search strategies: how each kind of search (``search.sampler`` in a study file) proposes trials.

Each kind is one module that subclasses :class:`SearchStrategy` and registers itself with
:func:`register`; the study-file validator, the orchestration and ``make_sampler`` all read the
registry, so adding a kind is one new module plus its import below. An unknown kind is an error
(never a silent fallback).

The built-in kinds:

- ``narrowing`` (:mod:`._narrowing`): random samples in ranges narrowed after each stage;
- ``random`` (:mod:`._random`): random samples in the first stage's ranges;
- ``tpe`` (:mod:`._tpe`) and ``cmaes`` (:mod:`._cmaes`): Optuna's sequential samplers, which
  propose from the finished trials a few trials at a time.

Importing this package is cheap: Optuna and NumPy load when a strategy first proposes.
"""

from __future__ import annotations

# Importing a kind's module registers it; the order here is the order users see.
# isort: off
from . import _narrowing, _random, _tpe, _cmaes  # noqa: F401

# isort: on
from ._base import Proposal, SearchStrategy, UnknownStrategyError, get_strategy, register, strategy_names
from ._split import DEFAULT_STAGES, split_trials

__all__ = [
    "DEFAULT_STAGES",
    "Proposal",
    "SearchStrategy",
    "UnknownStrategyError",
    "get_strategy",
    "register",
    "split_trials",
    "strategy_names",
]
