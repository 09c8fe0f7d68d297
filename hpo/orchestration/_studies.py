"""A study as the service sees it: its spec, its submission and its best trials."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..spec import StudySpec
from ..storage import Storage, StudyRow, TrialRow

if TYPE_CHECKING:
    import engine

__all__ = [
    "StudyDeleted",
    "best_trials",
    "check_artifact_store",
    "delete_study",
    "objective_value",
    "study_spec",
    "submit_study",
]


def study_spec(study: StudyRow) -> StudySpec:
    """The validated spec a study was submitted with (parsed once per process: specs are frozen)."""
    return _parse_spec(study.spec)


@functools.lru_cache(maxsize=64)
def _parse_spec(spec_json: str) -> StudySpec:
    return StudySpec.model_validate_json(spec_json)


def check_artifact_store(database_url: str, artifacts: str | None) -> str:
    """Resolve the artifact store of a study submitted to ``database_url``, and check it.

    Args:
        database_url: The study's database.
        artifacts: ``--artifacts`` (None: the ``HPO_ARTIFACTS`` setting, else the default beside
            the database, see :func:`hpo.artifacts.resolve_store_url`).

    Returns:
        The store's URL.

    Raises:
        ArtifactStoreError: The URL is malformed, or the store cannot be reached or written (one
            line; nothing is left behind).
    """
    from .._settings import get_settings
    from ..artifacts import open_store, resolve_store_url

    url = resolve_store_url(database_url, get_settings().artifacts if artifacts is None else artifacts)
    open_store(url).check()
    return url


def submit_study(
    storage: Storage, spec: StudySpec, *, queue: str | None = None, artifacts: str | None = None
) -> tuple[StudyRow, bool]:
    """Write a study, its first stage and that stage's trials, in one transaction.

    The artifact store is checked first (:func:`check_artifact_store`): a store that cannot be
    written stops the submission before anything is. Its URL is stored on the study, so every
    worker keeps the study's checkpoints and models in the same place.

    Args:
        storage: The database.
        spec: The validated spec.
        queue: The message queue its trials go to (None: local processes run it).
        artifacts: The artifact store (as :func:`check_artifact_store` takes it).

    Returns:
        The study and whether it was created (False: the same spec was already submitted under
        this name, which is a no-op; the study keeps its store).

    Raises:
        StudyExistsError: a different spec exists under the same name.
        ArtifactStoreError: The artifact store is malformed, unreachable or not writable.
    """
    # Here, not at the top: the samplers import Optuna (~0.2 s), which the read commands
    # (hpo best, hpo status), importing this module, never need.
    from ._proposals import first_stage_draft

    store = check_artifact_store(storage.url, artifacts)
    return storage.create_study(
        spec.name or "",
        spec.canonical_json(),
        _submitted_hash(storage, spec),
        spec.objective.direction,
        first_stage_draft(spec),
        queue=queue,
        metric_name=spec.objective.metric,
        artifacts=store,
    )


def _submitted_hash(storage: Storage, spec: StudySpec) -> str:
    """The spec's hash, or the stored study's if that study is this spec as an older hpo stored it.

    A release that adds a field with a default changes every canonical spec (it carries every
    default), so the same file would no longer match the study it made; read back under this
    release, the stored spec fills in the new default, and if it then equals this spec the
    submission is the same study (a no-op, as before the upgrade).
    """
    new = spec.spec_hash()
    existing = storage.find_study(spec.name or "")
    if existing is not None and existing.spec_hash != new:
        try:
            if StudySpec.from_json(existing.spec).spec_hash() == new:
                return existing.spec_hash
        except ValueError:  # pydantic's ValidationError: a spec this release cannot read differs
            pass
    return new


@dataclass(frozen=True)
class StudyDeleted:
    """What :func:`delete_study` removed, and what it could not.

    Attributes:
        store: The study's artifact store (None: made before models were kept).
        removed: Artifacts removed from it.
        left: Artifacts still there (the store could not be reached or written).
        reason: Why they were left.
    """

    store: str | None
    removed: int
    left: list[str] = field(default_factory=list)
    reason: str | None = None


def delete_study(storage: Storage, name: str) -> StudyDeleted:
    """Delete a study's rows and Optuna view (:meth:`Storage.delete_study`), then its artifacts.

    The artifact ids are collected in the transaction that deletes the rows; a store that cannot
    be reached does not keep the rows: they go, and the result says which artifacts were left.

    Raises:
        StudyNotFoundError: No such study.
    """
    from ..artifacts import remove_artifacts

    store = storage.get_study(name).artifacts
    ids = storage.delete_study(name)
    left, reason = remove_artifacts(store, ids)
    return StudyDeleted(store, len(ids) - len(left), left, reason)


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
