"""hpo's database: the ``hpo_*`` tables, the trial state machine, migrations and the Optuna view.

Importing this package creates no engine and imports neither Optuna nor a database driver;
everything is created on first use, once per process.

Example::

    from hpo.storage import StageDraft, Storage, encode_space

    storage = Storage("sqlite:///hpo.db")
    storage.upgrade()
    study, created = storage.create_study(name, spec_json, spec_hash, "maximize", StageDraft(...))
    trial = storage.claim_next(study.id, worker="host-123", lease_seconds=60)
"""

from __future__ import annotations

from ._checkpoints import CheckpointRecord
from ._engine import create_engine
from ._errors import StorageError, StudyExistsError, StudyNotFoundError, StudyStateError
from ._migrate import VERSION_TABLE, UpgradeResult, current_revision, head_revision, upgrade
from ._models import FINISHED_STATES, StageState, StudyState, TrialState
from ._optuna_mirror import decode_space, encode_space, optuna_storage
from ._rows import (
    Compute,
    NewTrial,
    StageDraft,
    StageRow,
    StudyCompute,
    StudyProgress,
    StudyRow,
    TrialOutcome,
    TrialRow,
)
from ._storage import DEFAULT_MAX_ATTEMPTS, Storage, dispose_engines

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "FINISHED_STATES",
    "VERSION_TABLE",
    "CheckpointRecord",
    "Compute",
    "NewTrial",
    "StageDraft",
    "StageRow",
    "StageState",
    "Storage",
    "StorageError",
    "StudyCompute",
    "StudyExistsError",
    "StudyNotFoundError",
    "StudyProgress",
    "StudyRow",
    "StudyState",
    "StudyStateError",
    "TrialOutcome",
    "TrialRow",
    "TrialState",
    "UpgradeResult",
    "create_engine",
    "current_revision",
    "decode_space",
    "dispose_engines",
    "encode_space",
    "head_revision",
    "optuna_storage",
    "upgrade",
]
