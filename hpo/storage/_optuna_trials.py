"""hpo's finished trials as Optuna trials: building the ``FrozenTrial`` and inserting its rows.

What a mirrored trial holds (state, params, intermediate values, ``user_attrs``) is described in
:mod:`hpo.storage._optuna_mirror`. Rows are written on the caller's connection, inside its
transaction, through Optuna's own table definitions and stored representations. Optuna is imported
on first use only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..artifacts import artifact_meta
from ._errors import StorageError
from ._models import TrialState
from ._rows import TrialRow

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.trial import FrozenTrial
    from optuna.trial import TrialState as OptunaState

__all__ = ["HPO_TRIAL_ATTR", "frozen_trial", "insert_intermediate", "insert_trials", "mirrored_trials"]

HPO_TRIAL_ATTR = "hpo_trial_id"
"""User attribute of a mirrored Optuna trial holding the id of its hpo trial."""

# Optuna's tables, read directly for the idempotence check (schema stable since Optuna 3.0).
_o_trials = sa.table("trials", sa.column("trial_id"), sa.column("study_id"))
_o_trial_attrs = sa.table(
    "trial_user_attributes", sa.column("trial_id"), sa.column("key"), sa.column("value_json")
)


def mirrored_trials(conn: Connection, optuna_study_id: int, hpo_trial_ids: Iterable[int]) -> dict[int, int]:
    """Which of ``hpo_trial_ids`` already have an Optuna trial: ``{hpo trial id: Optuna trial id}``.

    Read by ``user_attrs["hpo_trial_id"]``, so a crash between Optuna's write and hpo's record of
    it is found rather than written twice.
    """
    wanted = {json.dumps(int(i)): int(i) for i in hpo_trial_ids}
    found: dict[int, int] = {}
    keys = list(wanted)
    for start in range(0, len(keys), 500):
        rows = conn.execute(
            sa.select(_o_trial_attrs.c.value_json, _o_trials.c.trial_id)
            .join(_o_trials, _o_trials.c.trial_id == _o_trial_attrs.c.trial_id)
            .where(
                _o_trials.c.study_id == optuna_study_id,
                _o_trial_attrs.c.key == HPO_TRIAL_ATTR,
                _o_trial_attrs.c.value_json.in_(keys[start : start + 500]),
            )
        )
        for value_json, trial_id in rows:
            found.setdefault(wanted[value_json], int(trial_id))
    return found


def _fit(dist: BaseDistribution, value: Any) -> BaseDistribution | None:
    """``dist``, widened if needed so that it contains ``value``; ``None`` if it cannot."""
    from optuna.distributions import FloatDistribution, IntDistribution

    try:
        if dist._contains(dist.to_internal_repr(value)):
            return dist
    except (ValueError, TypeError):
        return None
    if isinstance(dist, FloatDistribution | IntDistribution) and isinstance(value, int | float):
        if (dist.log and value <= 0) or not math.isfinite(value):
            return None
        low: float = min(dist.low, value)
        high: float = max(dist.high, value)
        try:
            if isinstance(dist, IntDistribution):
                # Whole steps below the old low, so that the value stays on the step grid.
                int_low = dist.low - math.ceil((dist.low - low) / dist.step) * dist.step
                wider: BaseDistribution = IntDistribution(int_low, int(high), log=dist.log, step=dist.step)
            elif dist.step is not None:
                low = dist.low - math.ceil((dist.low - low) / dist.step - 1e-9) * dist.step
                wider = FloatDistribution(low, high, step=dist.step)
            else:
                wider = FloatDistribution(low, high, log=dist.log)
            if wider._contains(wider.to_internal_repr(value)):
                return wider
        except ValueError:
            return None
    return None


def _naive_local(moment: datetime | None) -> datetime | None:
    # Optuna stores naive local times (datetime.now()).
    return None if moment is None else moment.astimezone().replace(tzinfo=None)


def _fitted_params(
    row: TrialRow, distributions: Mapping[str, BaseDistribution]
) -> tuple[dict[str, Any], dict[str, BaseDistribution], dict[str, Any]]:
    """``(params, their distributions, unmirrored params)`` of a trial (see :func:`frozen_trial`)."""
    params: dict[str, Any] = {}
    dists: dict[str, BaseDistribution] = {}
    unmirrored: dict[str, Any] = {}
    for name, param in row.params.items():
        dist = distributions.get(name)
        fitted = _fit(dist, param) if dist is not None else None
        if fitted is None:
            unmirrored[name] = param
        else:
            params[name], dists[name] = param, fitted
    return params, dists, unmirrored


def _outcome(
    row: TrialRow, intermediate: Mapping[int, float]
) -> tuple[OptunaState, float | None, dict[str, Any]]:
    """``(Optuna state, value, system_attrs)`` of a finished trial: a pruned trial without a value
    takes its last intermediate value; a failed one keeps its reason as Optuna's ``fail_reason``."""
    from optuna.trial import TrialState as OptunaState

    if row.state == TrialState.COMPLETE:
        return OptunaState.COMPLETE, row.value, {}
    if row.state == TrialState.PRUNED:
        value = row.value
        if value is None and intermediate:
            value = intermediate[max(intermediate)]
        if value is not None and math.isnan(value):
            value = None
        return OptunaState.PRUNED, value, {}
    return OptunaState.FAIL, None, {"fail_reason": row.reason} if row.reason else {}


def frozen_trial(
    row: TrialRow,
    distributions: Mapping[str, BaseDistribution],
    study_name: str,
    *,
    parent_number: int | None = None,
) -> FrozenTrial:
    """The Optuna trial of a finished hpo trial, ready for ``create_new_trial(template_trial=...)``.

    A parameter that is not in its stage's space, or not within it even after widening the range,
    is kept in ``user_attrs["hpo_unmirrored_params"]`` instead of Optuna's params. A trial with a
    model names it as ``optuna.artifacts`` names an upload (:func:`hpo.artifacts.artifact_meta`,
    file ``<study>-trial-<number>.npz``), so ``optuna-dashboard --artifact-dir DIR`` lists it.

    Args:
        row: A trial in a final state.
        distributions: From :func:`~hpo.storage._optuna_mirror.stage_distributions`.
        study_name: Its study's name (the model's file name starts with it).
        parent_number: The number of the trial whose network it continues (promotion), kept in
            ``user_attrs["hpo_parent_trial"]``; None: it started from scratch.

    Returns:
        The frozen trial.
    """
    import optuna

    if not row.finished:
        raise ValueError(f"trial {row.id} is {row.state}, not finished")
    params, dists, unmirrored = _fitted_params(row, distributions)
    intermediate = {step: v for step, v in (row.intermediate or {}).items() if not math.isnan(v)}
    user_attrs: dict[str, Any] = {
        HPO_TRIAL_ATTR: row.id,
        "hpo_number": row.number,
        "stage": row.stage + 1,  # as hpo's commands show it (see hpo.storage._optuna_mirror)
        "seed": row.seed,
    }
    if unmirrored:
        user_attrs["hpo_unmirrored_params"] = unmirrored
    if row.reason:
        user_attrs["hpo_reason"] = row.reason
    if row.epochs_trained is not None:  # recorded by every worker's finish since revision 0007
        user_attrs["hpo_epochs_trained"] = row.epochs_trained
        user_attrs["hpo_train_seconds"] = row.train_seconds
    if parent_number is not None:
        user_attrs["hpo_parent_trial"] = parent_number
    state, value, system_attrs = _outcome(row, intermediate)
    if row.model is not None:
        key, meta = artifact_meta(row.model, f"{study_name}-trial-{row.number}.npz")
        system_attrs[key] = meta  # a JSON string, as optuna.artifacts stores it (and reads it back)
    trial = optuna.trial.create_trial(
        state=state,
        value=value,
        params=params,
        distributions=dists,
        user_attrs=user_attrs,
        system_attrs=system_attrs,
        intermediate_values=intermediate,
    )
    complete = _naive_local(row.finished_at) or trial.datetime_complete
    trial.datetime_start = _naive_local(row.started_at) or complete
    trial.datetime_complete = complete
    return trial


def insert_trials(conn: Connection, optuna_study_id: int, trials: Sequence[FrozenTrial]) -> list[int]:
    """Insert finished trials into an Optuna study on ``conn``; returns their new trial ids, in order.

    Optuna's ``create_new_trial(template_trial=...)`` writes each param, attribute and
    intermediate value through its ORM with look-ups in between (~12 ms per trial here). This
    writes the same rows, through Optuna's own table definitions and stored representations, with
    one statement per table for the whole batch, inside the caller's transaction. Trials are
    numbered after the study's existing ones, as Optuna numbers them: the caller holds the
    per-study lock, so two writers never take the same numbers.

    Raises:
        StorageError: The Optuna study does not exist (it was deleted).
    """
    from optuna.storages._rdb import models as m

    if not trials:
        return []
    studies, table = m.StudyModel.__table__, m.TrialModel.__table__
    count = sa.select(sa.func.count()).select_from(table).where(table.c.study_id == optuna_study_id)
    number = conn.execute(
        sa.select(count.scalar_subquery()).where(studies.c.study_id == optuna_study_id)
    ).scalar_one_or_none()
    if number is None:
        raise StorageError(f"Optuna study {optuna_study_id} does not exist (sync() re-creates it)")
    inserted = conn.execute(
        sa.insert(table).returning(table.c.trial_id, sort_by_parameter_order=True),
        [
            {
                "number": number + i,
                "study_id": optuna_study_id,
                "state": t.state,
                "datetime_start": t.datetime_start,
                "datetime_complete": t.datetime_complete,
            }
            for i, t in enumerate(trials)
        ],
    )
    ids = [int(trial_id) for (trial_id,) in inserted]
    for model, values in _trial_rows(ids, trials).items():
        if values:
            conn.execute(sa.insert(model.__table__), values)
    return ids


def _trial_rows(ids: Sequence[int], trials: Sequence[FrozenTrial]) -> dict[Any, list[dict[str, Any]]]:
    """The rows of the trials' params, values, attributes and intermediate values, by Optuna model."""
    from optuna.distributions import distribution_to_json
    from optuna.storages._rdb import models as m

    rows: dict[Any, list[dict[str, Any]]] = {}
    for trial_id, t in zip(ids, trials, strict=True):
        rows.setdefault(m.TrialParamModel, []).extend(
            {
                "trial_id": trial_id,
                "param_name": name,
                "param_value": t.distributions[name].to_internal_repr(value),
                "distribution_json": distribution_to_json(t.distributions[name]),
            }
            for name, value in t.params.items()
        )
        for objective, value in enumerate(t.values or ()):
            stored, kind = m.TrialValueModel.value_to_stored_repr(float(value))
            rows.setdefault(m.TrialValueModel, []).append(
                {"trial_id": trial_id, "objective": objective, "value": stored, "value_type": kind}
            )
        for model, attrs in (
            (m.TrialUserAttributeModel, t.user_attrs),
            (m.TrialSystemAttributeModel, t.system_attrs),
        ):
            rows.setdefault(model, []).extend(
                {"trial_id": trial_id, "key": k, "value_json": json.dumps(v)} for k, v in attrs.items()
            )
        rows.setdefault(m.TrialIntermediateValueModel, []).extend(
            _intermediate_rows(trial_id, t.intermediate_values)
        )
    return rows


def insert_intermediate(conn: Connection, optuna_trial_id: int, values: Mapping[int, float]) -> int:
    """Add the steps of ``values`` that the Optuna trial does not have yet (repairs a trial
    written before a crash, maybe without its intermediate values).

    Returns:
        How many steps were written.
    """
    from optuna.storages._rdb import models

    table = models.TrialIntermediateValueModel.__table__
    have = {
        int(step)
        for (step,) in conn.execute(sa.select(table.c.step).where(table.c.trial_id == optuna_trial_id))
    }
    rows = _intermediate_rows(optuna_trial_id, {k: v for k, v in values.items() if int(k) not in have})
    if rows:
        conn.execute(sa.insert(table), rows)
    return len(rows)


def _intermediate_rows(optuna_trial_id: int, values: Mapping[int, float]) -> list[dict[str, Any]]:
    from optuna.storages._rdb import models

    model = models.TrialIntermediateValueModel
    rows = []
    for step, value in sorted(values.items()):
        stored, kind = model.intermediate_value_to_stored_repr(float(value))
        rows.append(
            {
                "trial_id": optuna_trial_id,
                "step": int(step),
                "intermediate_value": stored,
                "intermediate_value_type": kind,
            }
        )
    return rows
