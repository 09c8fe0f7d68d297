"""Reads and writes of a :class:`~hpo.storage.Storage` that only tests need.

They were methods of ``Storage`` once; no part of hpo calls them, so they live here, taking the
storage, and run in its transactions (the same ``BEGIN IMMEDIATE`` on SQLite, the same errors).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import sqlalchemy as sa

from hpo.storage import Storage, TrialRow, decode_space
from hpo.storage._models import Stage, StageState, Trial
from hpo.storage._rows import intermediate_from_json, row_from

__all__ = ["claim", "delete_optuna_trials", "intermediate_values", "set_stage_space", "trial"]

_OPTUNA_TRIAL_TABLES = (
    "trial_params",
    "trial_values",
    "trial_intermediate_values",
    "trial_user_attributes",
    "trial_system_attributes",
    "trial_heartbeats",
    "trials",  # last: the others refer to it
)

_G = cast(sa.Table, Stage.__table__)
_T = cast(sa.Table, Trial.__table__)


def claim(storage: Storage, trial_id: int, worker: str, lease_seconds: float) -> TrialRow | None:
    """Claim one trial if it is ``PENDING`` and its study is running: the trial, or ``None``
    (already claimed, finished, or the study is not running)."""
    claimed = storage.claim_with_study(trial_id, worker, lease_seconds)
    return None if claimed is None else claimed[0]


def trial(storage: Storage, trial_id: int) -> TrialRow | None:
    """One trial, or ``None``."""
    with storage._read() as conn:
        m = conn.execute(sa.select(_T).where(_T.c.id == trial_id)).mappings().first()
    return None if m is None else row_from(TrialRow, m)


def intermediate_values(
    storage: Storage, study_id: int, stage: int | None = None
) -> dict[int, dict[int, float]]:
    """Per-epoch objective values reported so far (by heartbeats or finish), by trial number;
    trials without any value are left out."""
    query = (
        sa.select(_T.c.number, _T.c.intermediate)
        .where(_T.c.study_id == study_id, _T.c.intermediate.is_not(None))
        .order_by(_T.c.number)
    )
    if stage is not None:
        query = query.where(_T.c.stage == stage)
    with storage._read() as conn:
        return {number: intermediate_from_json(text) or {} for number, text in conn.execute(query)}


def set_stage_space(storage: Storage, study_id: int, index: int, space_json: str) -> bool:
    """Replace the recorded space of a stage that is still ``RUNNING``: whether it was (and so was
    updated). Trials already mirrored into Optuna keep the distributions they were written with.

    Raises:
        StorageError: ``space_json`` is not a space.
    """
    decode_space(space_json)
    with storage._write() as conn:
        result = conn.execute(
            sa.update(_G)
            .where(_G.c.study_id == study_id, _G.c.index == index, _G.c.state == StageState.RUNNING.value)
            .values(space=space_json)
        )
        return result.rowcount == 1


def delete_optuna_trials(storage: Storage, optuna_trial_ids: Iterable[int]) -> None:
    """Break the Optuna view as a user with SQL could: delete these Optuna trials and their rows,
    leaving hpo's record of them (``optuna_trial_id``) as it is."""
    ids = [int(i) for i in optuna_trial_ids]
    with storage.engine.begin() as conn:
        for table in _OPTUNA_TRIAL_TABLES:
            delete = sa.text(f"DELETE FROM {table} WHERE trial_id IN :ids")
            conn.execute(delete.bindparams(sa.bindparam("ids", expanding=True)), {"ids": ids})
