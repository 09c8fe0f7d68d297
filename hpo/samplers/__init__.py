"""Staged range narrowing ("Deep Learning from Scratch" ch. 6.5, step 3 automated) and Optuna samplers.

- :func:`narrow_space` / :func:`explain_narrowing`: from one stage's finished trials to the next
  stage's ranges, by the rule in :class:`NarrowingRule` (stated in ``docs/narrowing.md``).
- :func:`sample_params` with :func:`trial_rng`: a trial's parameters as a pure function of
  (study seed, trial number, stage space); :func:`sobol_params`: the same from a stage's
  scrambled Sobol sequence (``search.narrowing.sampling: sobol``).
- :func:`space_to_json` / :func:`space_from_json`: what storage keeps for each stage.
- :class:`NarrowingSampler`: the same method as a sampler for any plain Optuna script.
- :func:`make_sampler`: seeded samplers by name (``narrowing``, ``random``, ``tpe``, ``cmaes``).
"""

from __future__ import annotations

from ._errors import NarrowingError, SamplerError
from ._factory import SAMPLER_NAMES, make_sampler
from ._narrowing import (
    Direction,
    HardBounds,
    NarrowingRule,
    ParamNarrowing,
    TrialResult,
    explain_narrowing,
    narrow_space,
    pan_streaks,
)
from ._sampler import NarrowingSampler
from ._sampling import sample_params, sobol_params, sobol_points, trial_rng
from ._space import Space, space_from_json, space_to_json

__all__ = [
    "SAMPLER_NAMES",
    "Direction",
    "HardBounds",
    "NarrowingError",
    "NarrowingRule",
    "NarrowingSampler",
    "ParamNarrowing",
    "SamplerError",
    "Space",
    "TrialResult",
    "explain_narrowing",
    "make_sampler",
    "narrow_space",
    "pan_streaks",
    "sample_params",
    "sobol_params",
    "sobol_points",
    "space_from_json",
    "space_to_json",
    "trial_rng",
]
