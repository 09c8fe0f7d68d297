"""What a study's search section means to the rest of hpo: its Optuna space, the limits no
narrowed window may cross, its narrowing rule, its trials' seeds and how many may run at once.

Pure functions of the spec (``StudySpec`` exposes them as methods); Optuna, NumPy and the
samplers load when first used, so validating a study file stays light.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

    from ..samplers import NarrowingRule
    from ._study import StudySpec

__all__ = ["DEFAULT_IN_FLIGHT", "field_limits", "hard_bounds", "narrowing_rule", "search_space", "trial_seed"]

DEFAULT_IN_FLIGHT = 4
"""Trials of a sequential sampler (TPE, CMA-ES) that may exist unfinished at once, by default."""

_VIRTUAL_LIMITS = {("model", "width"): (1.0, 65536.0), ("model", "depth"): (0.0, 64.0)}


def search_space(spec: StudySpec) -> dict[str, BaseDistribution]:
    """The first stage's space: the parameters section as Optuna distributions."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    space: dict[str, BaseDistribution] = {}
    for name, p in spec.search.parameters.items():
        if p.type == "float":
            space[name] = FloatDistribution(p.low, p.high, log=p.log)
        elif p.type == "int":
            space[name] = IntDistribution(p.low, p.high, log=p.log, step=p.step)
        else:
            space[name] = CategoricalDistribution(list(p.choices))
    return space


def hard_bounds(spec: StudySpec) -> dict[str, tuple[float | None, float | None]]:
    """The limits no narrowed window may cross, per numeric parameter.

    A parameter's own ``bounds`` when given; otherwise the limits its field allows (``dropout``
    below 1, ``lr`` above 0, a layer width of at least 1), so panning never produces values the
    trial would reject.
    """
    out: dict[str, tuple[float | None, float | None]] = {}
    targets = spec.parameter_targets()
    for name, p in spec.search.parameters.items():
        if p.type == "categorical":
            continue
        if p.bounds is not None:
            out[name] = (float(p.bounds[0]), float(p.bounds[1]))
        else:
            out[name] = field_limits(*targets[name], log=p.log)
    return out


def field_limits(section: str, field: str, *, log: bool) -> tuple[float | None, float | None]:
    """The closed interval a field's own constraints (ge/gt/le/lt) allow."""
    import annotated_types as at

    from ._models import ModelSpec, TrainingSpec

    if (section, field) in _VIRTUAL_LIMITS:
        return _VIRTUAL_LIMITS[(section, field)]
    model = {"model": ModelSpec, "training": TrainingSpec}[section]
    lo: float | None = None
    hi: float | None = None
    for meta in model.model_fields[field].metadata:
        if isinstance(meta, at.Ge):
            lo = float(meta.ge)  # type: ignore[arg-type]
        elif isinstance(meta, at.Gt):
            lo = math.nextafter(float(meta.gt), math.inf)  # type: ignore[arg-type]
        elif isinstance(meta, at.Le):
            hi = float(meta.le)  # type: ignore[arg-type]
        elif isinstance(meta, at.Lt):
            hi = math.nextafter(float(meta.lt), -math.inf)  # type: ignore[arg-type]
    if log and lo is not None and lo < 1e-300:
        lo = None  # log ranges stay positive by construction
    return lo, hi


def narrowing_rule(spec: StudySpec) -> NarrowingRule:
    """The study's narrowing rule (defaults where the file is silent)."""
    from ..samplers import NarrowingRule

    n = spec.search.narrowing
    if n is None:
        return NarrowingRule()
    return NarrowingRule(
        top_fraction=n.top_fraction,
        min_top=n.min_top,
        margin=n.margin,
        min_width=n.min_width,
        pan=n.pan,
        pan_growth=n.pan_growth,
        top_cut=n.top_cut,
    )


def trial_seed(study_seed: int, number: int) -> int:
    """The training seed of trial ``number``: a pure function of the study seed and the number."""
    import numpy as np

    return int(np.random.SeedSequence([study_seed, number, 0x5EED]).generate_state(1)[0])
