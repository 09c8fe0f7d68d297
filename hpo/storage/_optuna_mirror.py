"""The Optuna view of hpo's studies: an Optuna study per hpo study, in Optuna's own tables.

Each hpo study has an Optuna study of the same name in the same database; each finished hpo trial
becomes a finished Optuna trial (``COMPLETE`` with its value, ``FAIL`` without one, ``PRUNED`` with
its last intermediate value) with its params, distributions, per-epoch intermediate values and
``user_attrs`` ``hpo_trial_id``, ``hpo_number``, ``stage`` and ``seed`` (and, when recorded,
``hpo_reason``, ``hpo_epochs_trained`` and ``hpo_train_seconds``). Optuna numbers its trials in the
order they are mirrored, so ``user_attrs["hpo_number"]`` carries hpo's number.

A trial that continues another trial's network (promotion across stages) has that trial's hpo
number in ``user_attrs["hpo_parent_trial"]``.

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

This module holds the studies and the stage spaces; it re-exports the rest, so that it stays the one
name :class:`~hpo.storage.Storage` uses: the process's ``RDBStorage`` and Optuna's schema
(:mod:`~hpo.storage._optuna_storage`), and building and inserting the trials
(:mod:`~hpo.storage._optuna_trials`). Optuna is imported on first use only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .._space_json import SPACE_JSON_VERSION, space_from_data, space_to_data
from ._errors import StorageError
from ._optuna_storage import (
    dispose_optuna_storage,
    dispose_optuna_storages,
    find_optuna_study,
    optuna_storage,
    upgrade_optuna_schema,
)
from ._optuna_trials import HPO_TRIAL_ATTR, frozen_trial, insert_intermediate, insert_trials, mirrored_trials
from ._rows import StageRow

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

__all__ = [
    "HPO_STUDY_ATTR",
    "HPO_TRIAL_ATTR",
    "METRIC_NAMES_ATTR",
    "SPACE_JSON_VERSION",
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

HPO_STUDY_ATTR = "hpo_study_id"
"""User attribute of an Optuna study holding the id of the hpo study that owns it."""
HPO_LINK_ATTR = "hpo:link"
"""System attribute of an Optuna study holding the token of the hpo study that owns it."""
METRIC_NAMES_ATTR = "study:metric_names"
"""System attribute where ``optuna.Study.set_metric_names`` stores the objectives' names (a JSON
list), read by ``Study.metric_names`` and optuna-dashboard."""


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


def encode_space(space: Mapping[str, BaseDistribution]) -> str:
    """JSON text of a space, in the stored layout (:mod:`hpo._space_json`).

    The same text as ``json.dumps(hpo.samplers.space_to_json(space))``, without its check of the
    distributions' kinds.

    Args:
        space: Optuna distributions by parameter name.

    Returns:
        The text stored in ``hpo_stages.space``.
    """
    return json.dumps(space_to_data(space))


def decode_space(text: str) -> dict[str, BaseDistribution]:
    """The Optuna distributions of a stored stage space, in order.

    Reads the layout of :func:`encode_space` (``hpo.samplers``), and also a plain
    ``{param: distribution JSON}`` object.

    Raises:
        StorageError: The text is not a space.
    """
    try:
        return space_from_data(json.loads(text), plain=True)
    except (ValueError, TypeError) as exc:  # SpaceJSONError is a ValueError, as is bad JSON
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
