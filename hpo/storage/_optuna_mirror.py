"""The Optuna view of hpo's studies: an Optuna study per hpo study, in Optuna's own tables.

Each hpo study has an Optuna study of the same name in the same database; each finished hpo trial
becomes a finished Optuna trial (``COMPLETE`` with its value, ``FAIL`` without one, ``PRUNED`` with
its last intermediate value) with its params, distributions, per-epoch intermediate values and
``user_attrs`` ``hpo_trial_id``, ``hpo_number``, ``stage`` and ``seed``. Optuna numbers its trials
in the order they are mirrored, so ``user_attrs["hpo_number"]`` carries hpo's number.

``user_attrs["stage"]`` is the stage as hpo's commands show it, counted from 1 (``hpo status``,
``hpo trials``, ``hpo best``); hpo's own tables count from 0 (``hpo_trials.stage``,
``hpo_stages.index``). Trials mirrored by earlier versions of hpo keep the 0-based ``stage`` they
were written with (nothing in hpo reads the attribute back).

The Optuna study names its objective as ``optuna.Study.set_metric_names`` does (the system
attribute ``study:metric_names``, e.g. ``["val_acc"]``), so Optuna's tools and optuna-dashboard
show ``val_acc`` or ``val_loss`` instead of "Objective 0".

Studies are created and deleted, and trials inserted in batches, on the caller's connection through
Optuna's own models and table definitions, so that they commit together with hpo's record of them
(``hpo_studies.optuna_study_id``, ``hpo_trials.optuna_trial_id``); the lock and the bookkeeping are
:class:`~hpo.storage.Storage`'s. hpo only ever writes to or deletes an Optuna study that its own
tables link to (:func:`is_linked`): an Optuna study a user made or copied is never ours.

Optuna is imported on first use only.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ._engine import BUSY_TIMEOUT_S, is_sqlite, sqlite_begin_immediate
from ._errors import StorageError
from ._models import TrialState
from ._rows import StageRow, TrialRow

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.storages import RDBStorage
    from optuna.trial import FrozenTrial

__all__ = [
    "HPO_STUDY_ATTR",
    "HPO_TRIAL_ATTR",
    "METRIC_NAMES_ATTR",
    "add_metric_name",
    "create_optuna_study",
    "decode_space",
    "delete_optuna_study",
    "dispose_optuna_storage",
    "dispose_optuna_storages",
    "encode_space",
    "find_optuna_study",
    "frozen_trial",
    "insert_intermediate",
    "insert_trials",
    "is_linked",
    "mirrored_trials",
    "optuna_storage",
    "optuna_study_named",
    "stage_distributions",
    "upgrade_optuna_schema",
]

HPO_TRIAL_ATTR = "hpo_trial_id"
HPO_STUDY_ATTR = "hpo_study_id"
HPO_LINK_ATTR = "hpo:link"
"""System attribute of an Optuna study holding the token of the hpo study that owns it."""
METRIC_NAMES_ATTR = "study:metric_names"
"""System attribute where ``optuna.Study.set_metric_names`` stores the objectives' names (a JSON
list), read by ``Study.metric_names`` and optuna-dashboard."""
SPACE_JSON_VERSION = 1
"""Version of the stored space layout shared with :mod:`hpo.samplers`."""

_lock = threading.Lock()
_storages: dict[str, RDBStorage] = {}
_fork_hook_registered = False

# Optuna's tables, read directly for the idempotence check (schema stable since Optuna 3.0).
_o_trials = sa.table("trials", sa.column("trial_id"), sa.column("study_id"))
_o_trial_attrs = sa.table(
    "trial_user_attributes", sa.column("trial_id"), sa.column("key"), sa.column("value_json")
)


def _engine_kwargs(url: str) -> dict[str, Any]:
    if is_sqlite(url):
        return {"connect_args": {"timeout": BUSY_TIMEOUT_S}}
    return {"pool_pre_ping": True, "pool_size": 2, "max_overflow": 8, "connect_args": {"connect_timeout": 10}}


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()
    for storage in _storages.values():
        storage.engine.dispose(close=False)
    _storages.clear()


def _configure(storage: RDBStorage) -> RDBStorage:
    if storage.engine.dialect.name == "sqlite":
        # Optuna's transactions read, then write: with a deferred BEGIN, a commit by another
        # process in between fails at once with "database is locked" (no busy wait).
        sqlite_begin_immediate(storage.engine)
        storage.engine.dispose()
    return storage


def optuna_storage(url: str) -> RDBStorage:
    """The process's ``optuna.storages.RDBStorage`` for ``url`` (created on first use).

    On SQLite its engine gets the same WAL / busy timeout / ``BEGIN IMMEDIATE`` setup as hpo's. It
    is dropped in forked children. Samplers and pruners may share it (``optuna.load_study(...,
    storage=optuna_storage(url))``).

    Args:
        url: The database URL (hpo's tables and Optuna's are in the same database).

    Returns:
        The storage.
    """
    global _fork_hook_registered
    storage = _storages.get(url)
    if storage is not None:
        return storage
    from optuna.storages import RDBStorage

    with _lock:
        if not _fork_hook_registered and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork_in_child)
            _fork_hook_registered = True
        storage = _storages.get(url)
        if storage is None:
            storage = _storages[url] = _configure(RDBStorage(url, engine_kwargs=_engine_kwargs(url)))
    return storage


def dispose_optuna_storage(url: str) -> None:
    """Close and forget this process's Optuna storage for ``url``."""
    with _lock:
        storage = _storages.pop(url, None)
    if storage is not None:
        storage.engine.dispose()


def dispose_optuna_storages() -> None:
    """Close the engines of this process's cached Optuna storages and forget them."""
    with _lock:
        for storage in _storages.values():
            storage.engine.dispose()
        _storages.clear()


def upgrade_optuna_schema(url: str) -> str:
    """Create Optuna's tables, or upgrade them with Optuna's own migrations (``alembic_version``).

    Returns:
        The version of Optuna's schema now (e.g. ``v3.2.0.a``).
    """
    from optuna.storages import RDBStorage

    storage = RDBStorage(url, engine_kwargs=_engine_kwargs(url), skip_compatibility_check=True)
    try:
        if storage.get_current_version() != storage.get_head_version():
            storage.upgrade()
        return storage.get_current_version()
    finally:
        storage.engine.dispose()


def find_optuna_study(url: str, name: str) -> int | None:
    """Id of the Optuna study called ``name``, or ``None``."""
    try:
        return optuna_storage(url).get_study_id_from_name(name)
    except KeyError:
        return None


def optuna_study_named(conn: Connection, name: str) -> int | None:
    """Id of the Optuna study called ``name``, read on ``conn`` (inside the caller's transaction)."""
    from optuna.storages._rdb import models

    studies = models.StudyModel.__table__
    found = conn.execute(sa.select(studies.c.study_id).where(studies.c.study_name == name)).scalar()
    return None if found is None else int(found)


def is_linked(conn: Connection, optuna_study_id: int | None, name: str, link: str | None) -> bool:
    """Whether the Optuna study an hpo study records still exists as the one hpo made: the only
    Optuna study hpo may write to or delete for it.

    The id and name must match, and so must the link token (``hpo_studies.optuna_link`` and the
    ``hpo:link`` system attribute) when the study has one: SQLite gives a new row the id of a
    deleted last one, so a study a user made in place of ours may have its id and name; and a user
    attribute proves nothing either (``optuna.copy_study`` copies it into a study of the user's).
    """
    if optuna_study_id is None or optuna_study_named(conn, name) != optuna_study_id:
        return False
    if link is None:  # made before links existed (revision 0004)
        return True
    from optuna.storages._rdb import models

    attrs = models.StudySystemAttributeModel.__table__
    stored = conn.execute(
        sa.select(attrs.c.value_json).where(attrs.c.study_id == optuna_study_id, attrs.c.key == HPO_LINK_ATTR)
    ).scalar()
    return stored == json.dumps(link)


def create_optuna_study(
    conn: Connection,
    name: str,
    direction: str,
    hpo_study_id: int,
    link: str,
    metric_name: str | None = None,
) -> int:
    """Create the Optuna study of an hpo study on ``conn``, inside the caller's transaction.

    The caller writes the link (``hpo_studies.optuna_study_id``) in the same transaction, so no
    Optuna study made by hpo is ever left without its owner. The rows are written through Optuna's
    own ORM models, as ``RDBStorage.create_new_study`` writes them, with ``user_attrs`` recording
    the owner for readers, the system attribute ``hpo:link`` holding ``link`` (see
    :func:`is_linked`) and, given a ``metric_name``, the objective's name as
    ``Study.set_metric_names`` stores it.

    Raises:
        sqlalchemy.exc.IntegrityError: An Optuna study of that name exists (its names are unique).
    """
    from optuna.storages._rdb import models
    from optuna.study import StudyDirection
    from sqlalchemy.orm import Session

    # The session joins the caller's transaction: it neither commits nor rolls it back.
    with Session(bind=conn) as session:
        study = models.StudyModel(
            study_name=name,
            directions=[models.StudyDirectionModel(objective=0, direction=StudyDirection[direction.upper()])],
        )
        study.user_attributes = [
            models.StudyUserAttributeModel(key=HPO_STUDY_ATTR, value_json=json.dumps(hpo_study_id))
        ]
        system_attrs: dict[str, Any] = {HPO_LINK_ATTR: link}
        if metric_name is not None:
            system_attrs[METRIC_NAMES_ATTR] = [metric_name]
        study.system_attributes = [
            models.StudySystemAttributeModel(key=key, value_json=json.dumps(value))
            for key, value in system_attrs.items()
        ]
        session.add(study)
        session.flush()
        return int(study.study_id)


def add_metric_name(conn: Connection, optuna_study_id: int, metric_name: str | None) -> bool:
    """Name the objective of an Optuna study made before hpo recorded it, on ``conn``.

    A study that has names already (hpo's, or a user's from ``set_metric_names``) is left as it
    is. The caller holds the study's mirror lock, so two writers never add the row together.

    Returns:
        Whether the name was written.
    """
    from optuna.storages._rdb import models

    if metric_name is None:
        return False
    attrs = models.StudySystemAttributeModel.__table__
    named = sa.select(attrs.c.key).where(
        attrs.c.study_id == optuna_study_id, attrs.c.key == METRIC_NAMES_ATTR
    )
    if conn.execute(named).first() is not None:
        return False
    conn.execute(
        sa.insert(attrs).values(
            study_id=optuna_study_id, key=METRIC_NAMES_ATTR, value_json=json.dumps([metric_name])
        )
    )
    return True


def delete_optuna_study(conn: Connection, optuna_study_id: int) -> None:
    """Delete an Optuna study with its trials on ``conn``, inside the caller's transaction (through
    Optuna's ORM cascades, as ``RDBStorage.delete_study`` does). No error if it is gone."""
    from optuna.storages._rdb import models
    from sqlalchemy.orm import Session

    with Session(bind=conn) as session:
        study = session.get(models.StudyModel, optuna_study_id)
        if study is not None:
            session.delete(study)
            session.flush()


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


def encode_space(space: Mapping[str, BaseDistribution]) -> str:
    """JSON text of a space, in the layout :mod:`hpo.samplers` stores.

    ``{"version": 1, "params": [{"name": ..., "distribution": {...}}, ...]}`` with Optuna's own
    distribution JSON, parameters in order: the same text as
    ``json.dumps(hpo.samplers.space_to_json(space))``.

    Args:
        space: Optuna distributions by parameter name.

    Returns:
        The text stored in ``hpo_stages.space``.
    """
    from optuna.distributions import distribution_to_json

    params = [
        {"name": name, "distribution": json.loads(distribution_to_json(d))} for name, d in space.items()
    ]
    return json.dumps({"version": SPACE_JSON_VERSION, "params": params})


def decode_space(text: str) -> dict[str, BaseDistribution]:
    """The Optuna distributions of a stored stage space, in order.

    Reads the layout of :func:`encode_space` (``hpo.samplers``), and also a plain
    ``{param: distribution JSON}`` object.

    Raises:
        StorageError: The text is not a space.
    """
    from optuna.distributions import json_to_distribution

    def dist(value: Any) -> BaseDistribution:
        return json_to_distribution(value if isinstance(value, str) else json.dumps(value))

    try:
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        if "params" in raw and "version" in raw:
            if raw["version"] != SPACE_JSON_VERSION:
                raise ValueError(f"unknown space layout version {raw['version']!r}")
            if not isinstance(raw["params"], list):
                raise ValueError("'params' must be a list")
            return {str(item["name"]): dist(item["distribution"]) for item in raw["params"]}
        return {str(name): dist(value) for name, value in raw.items()}
    except (ValueError, TypeError, KeyError) as exc:
        raise StorageError(f"invalid stage space JSON: {exc}") from exc


def stage_distributions(stages: Iterable[StageRow], index: int) -> dict[str, BaseDistribution]:
    """Distributions to record for trials of stage ``index``.

    The stage's own space, except for categorical parameters: Optuna refuses a categorical whose
    choices differ from those already recorded for the parameter, so they take the choices of the
    first stage that has the parameter (narrowing only ever keeps a subset of them).
    """
    from optuna.distributions import CategoricalDistribution

    by_index = {s.index: s for s in stages}
    space = decode_space(by_index[index].space)
    for name, dist in list(space.items()):
        if not isinstance(dist, CategoricalDistribution):
            continue
        for i in sorted(by_index):
            first = decode_space(by_index[i].space).get(name)
            if isinstance(first, CategoricalDistribution):
                space[name] = first
                break
    return space


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


def frozen_trial(row: TrialRow, distributions: Mapping[str, BaseDistribution]) -> FrozenTrial:
    """The Optuna trial of a finished hpo trial, ready for ``create_new_trial(template_trial=...)``.

    A parameter that is not in its stage's space, or not within it even after widening the range,
    is kept in ``user_attrs["hpo_unmirrored_params"]`` instead of Optuna's params.

    Args:
        row: A trial in a final state.
        distributions: From :func:`stage_distributions`.

    Returns:
        The frozen trial.
    """
    import optuna
    from optuna.trial import TrialState as OptunaState

    if not row.finished:
        raise ValueError(f"trial {row.id} is {row.state}, not finished")
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
    intermediate = {step: v for step, v in (row.intermediate or {}).items() if not math.isnan(v)}
    user_attrs: dict[str, Any] = {
        HPO_TRIAL_ATTR: row.id,
        "hpo_number": row.number,
        "stage": row.stage + 1,  # as hpo's commands show it (module docstring)
        "seed": row.seed,
    }
    if unmirrored:
        user_attrs["hpo_unmirrored_params"] = unmirrored
    if row.reason:
        user_attrs["hpo_reason"] = row.reason
    system_attrs: dict[str, Any] = {}
    value: float | None = None
    if row.state == TrialState.COMPLETE:
        state = OptunaState.COMPLETE
        value = row.value
    elif row.state == TrialState.PRUNED:
        state = OptunaState.PRUNED
        value = row.value
        if value is None and intermediate:
            value = intermediate[max(intermediate)]
        if value is not None and math.isnan(value):
            value = None
    else:
        state = OptunaState.FAIL
        if row.reason:
            system_attrs["fail_reason"] = row.reason
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
    from optuna.distributions import distribution_to_json
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
    for model, values in rows.items():
        if values:
            conn.execute(sa.insert(model.__table__), values)
    return ids


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
