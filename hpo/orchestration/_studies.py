"""A study as the service sees it: its spec, its submission and its best trials."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..spec import StudySpec
from ..storage import Storage, StudyRow, TrialRow
from ._proposals import first_stage_draft

if TYPE_CHECKING:
    import engine

__all__ = ["best_trials", "objective_value", "study_spec", "submit_study"]


def study_spec(study: StudyRow) -> StudySpec:
    """The validated spec a study was submitted with (parsed once per process: specs are frozen)."""
    return _parse_spec(study.spec)


@functools.lru_cache(maxsize=64)
def _parse_spec(spec_json: str) -> StudySpec:
    return StudySpec.model_validate_json(spec_json)


def submit_study(storage: Storage, spec: StudySpec, *, queue: str | None = None) -> tuple[StudyRow, bool]:
    """Write a study, its first stage and that stage's trials, in one transaction.

    Returns:
        The study and whether it was created (False: the same spec was already submitted under
        this name, which is a no-op).

    Raises:
        StudyExistsError: a different spec exists under the same name.
    """
    return storage.create_study(
        spec.name or "",
        spec.canonical_json(),
        spec.spec_hash(),
        spec.objective.direction,
        first_stage_draft(spec),
        queue=queue,
        metric_name=spec.objective.metric,
    )


def best_trials(storage: Storage, study_id: int, spec: StudySpec, k: int = 1) -> list[TrialRow]:
    """The ``k`` best finished trials, best first (later stages win ties: longer training)."""
    return storage.best_trials(study_id, spec.objective.direction, k)


def objective_value(spec: StudySpec, history: Sequence[engine.EpochRecord]) -> float | None:
    """The trial's score: the objective metric at the last evaluated epoch, or its best."""
    metric = spec.objective.metric
    values = [getattr(r, metric) for r in history if getattr(r, metric) is not None]
    values = [float(v) for v in values if math.isfinite(v)]
    if not values:
        return None
    if spec.objective.reduce == "final":
        return values[-1]
    return max(values) if spec.objective.direction == "maximize" else min(values)
