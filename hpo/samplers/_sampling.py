"""Random sampling inside a space, from a generator that is a pure function of (seed, trial number)."""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from ._errors import NarrowingError
from ._space import check_space

__all__ = ["name_rng", "sample_params", "sample_value", "sobol_params", "sobol_points", "trial_rng"]


def trial_rng(seed: int, number: int) -> np.random.Generator:
    """The generator of one trial: ``np.random.default_rng([seed, number])``.

    Seeding from the pair (not ``seed + number``) gives every trial its own stream, so two workers
    never draw the same parameters and a rerun of trial ``number`` draws the same ones.

    Args:
        seed: The study seed (an integer >= 0).
        number: The trial number (an integer >= 0).

    Raises:
        NarrowingError: If ``seed`` or ``number`` is not a non-negative integer.
    """
    for what, value in (("seed", seed), ("number", number)):
        if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 0:
            raise NarrowingError(f"trial_rng: {what} must be an integer >= 0, got {value!r}")
    return np.random.default_rng([int(seed), int(number)])


def name_rng(seed: int, number: int, name: str) -> np.random.Generator:
    """A generator for one parameter of one trial, independent of which other parameters exist.

    Used where the whole space is not known in advance (a plain Optuna objective in stage 0): the
    draw then cannot depend on the order in which the objective asks for parameters. CRC-32 (not
    ``hash``) keeps the key the same in every process.
    """
    trial_rng(seed, number)  # validates seed and number
    return np.random.default_rng([int(seed), int(number), zlib.crc32(name.encode("utf-8"))])


def sample_params(space: Mapping[str, BaseDistribution], rng: np.random.Generator) -> dict[str, Any]:
    """Draw one value per parameter, in space order.

    Log parameters are uniform in ``log10``: ``10 ** rng.uniform(log10(low), log10(high))``; linear
    floats are uniform; ints (linear, log or stepped) and categorical choices are drawn with both
    ends included.

    Args:
        space: The space to sample.
        rng: The generator, usually :func:`trial_rng`.

    Returns:
        Parameter name to a plain Python value (``float``, ``int``, or the categorical choice).
    """
    return {name: sample_value(dist, rng) for name, dist in check_space(space).items()}


def sample_value(dist: BaseDistribution, rng: np.random.Generator) -> Any:
    """Draw one value of one distribution (see :func:`sample_params`)."""
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[int(rng.integers(len(dist.choices)))]
    if isinstance(dist, IntDistribution):
        if dist.log:
            # Each integer gets the log-width of [k - 0.5, k + 0.5], as Optuna's own samplers do,
            # so the ends are as likely as their neighbours.
            u = rng.uniform(math.log10(dist.low - 0.5), math.log10(dist.high + 0.5))
            return int(min(max(round(10.0**u), dist.low), dist.high))
        n = (dist.high - dist.low) // dist.step
        return int(dist.low + dist.step * int(rng.integers(n + 1)))
    if isinstance(dist, FloatDistribution):
        if dist.step is not None:
            n = math.floor((dist.high - dist.low) / dist.step + 1e-9)
            k = int(rng.integers(n + 1))
            # Decimal keeps grid values exact (0.1 + 3 * 0.1 is 0.4, not 0.4000000000000001).
            return min(float(Decimal(str(dist.low)) + k * Decimal(str(dist.step))), dist.high)
        if dist.log:
            value = 10.0 ** rng.uniform(math.log10(dist.low), math.log10(dist.high))
        else:
            value = rng.uniform(dist.low, dist.high)
        # 10**log10(x) may miss x by one ulp; the value must stay inside the distribution.
        return float(min(max(value, dist.low), dist.high))
    raise NarrowingError(f"cannot sample {type(dist).__name__}")


def sobol_params(space: Mapping[str, BaseDistribution], seed: int, stage: int, index: int) -> dict[str, Any]:
    """Point ``index`` of a stage's scrambled Sobol sequence, as one value per parameter.

    The sequence is a pure function of ``(seed, stage)`` and the space's size, so any process
    draws the same point for the same trial. The first ``2**k`` points of a Sobol sequence fill
    the unit cube evenly, with no two points close by chance as independent draws may be; each
    coordinate becomes a value as :func:`sample_params` would map a uniform draw (log ranges
    uniform in ``log10``, integers and choices in equal shares).

    Args:
        space: The stage's space (one coordinate per parameter, in space order).
        seed: The study seed.
        stage: The stage index (each stage has its own scrambling).
        index: The trial's position in its stage (0 for its first trial).
    """
    return sobol_points(space, seed, stage, [index])[0]


def sobol_points(
    space: Mapping[str, BaseDistribution], seed: int, stage: int, indices: Sequence[int]
) -> list[dict[str, Any]]:
    """:func:`sobol_params` for several positions of one stage, its sequence drawn once."""
    import warnings

    from scipy.stats import qmc

    space = check_space(space)
    for index in indices:
        trial_rng(seed, index)  # validates seed and index
    if not space or not indices:
        return [{} for _ in indices]
    engine = qmc.Sobol(
        d=len(space), scramble=True, seed=np.random.default_rng([int(seed), int(stage), 0x50B0])
    )
    with warnings.catch_warnings():  # "balance properties ... n=2**m": a prefix is what a stage uses
        warnings.simplefilter("ignore", category=UserWarning)
        points = engine.random(max(indices) + 1)
    return [
        {name: value_at(dist, float(u)) for (name, dist), u in zip(space.items(), points[i], strict=True)}
        for i in indices
    ]


def value_at(dist: BaseDistribution, u: float) -> Any:
    """The value of ``dist`` at quantile ``u`` in [0, 1) of the draw :func:`sample_value` makes."""
    u = min(max(u, 0.0), math.nextafter(1.0, 0.0))
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[int(u * len(dist.choices))]
    if isinstance(dist, IntDistribution):
        if dist.log:
            lo, hi = math.log10(dist.low - 0.5), math.log10(dist.high + 0.5)
            return int(min(max(round(10.0 ** (lo + u * (hi - lo))), dist.low), dist.high))
        n = (dist.high - dist.low) // dist.step
        return int(dist.low + dist.step * int(u * (n + 1)))
    if isinstance(dist, FloatDistribution):
        if dist.step is not None:
            n = math.floor((dist.high - dist.low) / dist.step + 1e-9)
            k = int(u * (n + 1))
            return min(float(Decimal(str(dist.low)) + k * Decimal(str(dist.step))), dist.high)
        if dist.log:
            lo, hi = math.log10(dist.low), math.log10(dist.high)
            value = 10.0 ** (lo + u * (hi - lo))
        else:
            value = dist.low + u * (dist.high - dist.low)
        return float(min(max(value, dist.low), dist.high))
    raise NarrowingError(f"cannot sample {type(dist).__name__}")
