"""The Optuna view of :class:`~hpo.storage.Storage`: each study's Optuna study, and its trials.

hpo's tables are the truth; the Optuna study of the same name is a view written from them
(:mod:`._optuna_mirror` writes the rows). Finished trials are written in batches by
:meth:`View.mirror`; :meth:`View.sync` repairs a view that lost its study or trials.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from . import _optuna_mirror as optuna_mirror
from ._base import FINISHED, G, S, T
from ._engine import advisory_lock, exclusive, try_advisory_lock
from ._errors import StudyExistsError
from ._queries import Queries
from ._rows import StageRow, StudyRow, TrialRow, row_from

__all__ = ["View", "name_taken", "spec_metric"]


def name_taken(name: str) -> StudyExistsError:
    """The error for a name held by an Optuna study that is not one of hpo's."""
    return StudyExistsError(
        f"an Optuna study named {name!r} already exists in this database and is not one of hpo's; "
        "hpo never changes it: choose another name"
    )


def spec_metric(spec_json: str) -> str | None:
    """The objective metric a stored spec names (``objective.metric``), if it names one."""
    try:
        objective = json.loads(spec_json).get("objective")
        metric = objective.get("metric") if isinstance(objective, dict) else None
    except (ValueError, AttributeError):  # not JSON, or not an object
        return None
    return metric if isinstance(metric, str) and metric else None


def _parent_numbers(conn: Connection, rows: Sequence[TrialRow]) -> dict[int, int]:
    """Id -> number of the trials whose networks ``rows`` continue (their parents)."""
    ids = sorted({r.parent_id for r in rows if r.parent_id is not None})
    out: dict[int, int] = {}
    for start in range(0, len(ids), 500):  # bounded IN lists
        query = sa.select(T.c.id, T.c.number).where(T.c.id.in_(ids[start : start + 500]))
        out.update({int(i): int(n) for i, n in conn.execute(query)})
    return out


class View(Queries):
    """The Optuna study of each study: created with it, written from its finished trials."""

    def _ensure_optuna_study(self, study: StudyRow, *, verify: bool = False) -> StudyRow:
        """Make sure the study has its Optuna study, creating or re-creating it if needed.

        With ``verify``, an Optuna study that was deleted is re-created and every trial is marked
        unmirrored, so that :meth:`sync` writes them all again.

        Raises:
            StudyExistsError: The name is taken by an Optuna study our tables do not link to (a
                user's: it is never adopted or changed).
        """
        if study.optuna_study_id is not None and not verify:
            return study
        # Under the mirror lock: no mirror of this study is half-way while its trials are reset.
        with (
            self._errors(),
            exclusive(self.engine, "mirror", study.id) as locked,
            self._locked_tx(locked) as conn,
        ):
            if optuna_mirror.is_linked(conn, study.optuna_study_id, study.name, study.optuna_link):
                return study
            if optuna_mirror.optuna_study_named(conn, study.name) is not None:
                raise name_taken(study.name)
            self._link_optuna_study(conn, study.id, study.name, study.direction, spec_metric(study.spec))
            if study.optuna_study_id is not None:
                # The recorded Optuna study was not found (SQLite may even reuse its id): every trial
                # is written again, or re-linked where the look-up by hpo_trial_id finds it.
                # Finished trials only: those are the mirrored ones, and no claim holds their rows.
                conn.execute(
                    sa.update(T)
                    .where(T.c.study_id == study.id, T.c.state.in_(FINISHED))
                    .values(optuna_trial_id=None)
                )
        return self.get_study_by_id(study.id)

    @staticmethod
    def _link_optuna_study(
        conn: Connection, study_id: int, name: str, direction: str, metric_name: str | None
    ) -> None:
        """Create the study's Optuna study and record the link to it, in the caller's transaction."""
        link = uuid.uuid4().hex  # an identity, not a sampled value: no seeded generator needed
        optuna_id = optuna_mirror.create_optuna_study(conn, name, direction, study_id, link, metric_name)
        conn.execute(
            sa.update(S).where(S.c.id == study_id).values(optuna_study_id=optuna_id, optuna_link=link)
        )

    def mirror(self, study_id: int, *, repair: bool = False, wait: bool = True) -> int:
        """Write the study's finished, unmirrored trials into its Optuna study, in one transaction.

        The Optuna rows and hpo's record of them (``optuna_trial_id``) commit together, so a trial
        is written once even if the process dies half-way. Concurrent callers are serialised per
        study (a transaction-level advisory lock on PostgreSQL; ``BEGIN IMMEDIATE`` on SQLite),
        which also keeps Optuna's trial numbers unique. An Optuna study made before hpo named its
        objective gets the spec's metric name (``study:metric_names``) with the next trials.

        Args:
            study_id: The study.
            repair: Look every unmirrored trial up in Optuna by ``user_attrs["hpo_trial_id"]``
                first, and link the ones found instead of writing them again (for databases where
                a trial was written without being recorded; :meth:`sync` sets it).
            wait: False returns 0 at once, writing nothing, when another process is mirroring
                this study (PostgreSQL): it writes these trials, or its next mirror will. For
                the mirrors made while a stage runs; the one at a stage's end waits.

        Returns:
            Number of Optuna trials written.

        Raises:
            StudyNotFoundError: No such study.
            StorageError: The Optuna study is missing (:meth:`sync` re-creates it) or the database
                refused the rows.
        """
        return self._mirror(study_id, repair=repair, relink=False, wait=wait)

    def sync(self, study_id: int) -> int:
        """Mirror every finished trial of a study that is missing from its Optuna study.

        Re-creates the Optuna study if it was deleted, writes again the trials whose Optuna trial
        is gone (deleted from Optuna's tables), and names its objective if it was made before hpo
        did (:meth:`mirror`). Idempotent: the repair path (``hpo db repair``).

        Returns:
            Number of Optuna trials written.

        Raises:
            StudyNotFoundError: No such study.
            StorageError: A trial cannot be written to Optuna.
        """
        self._ensure_optuna_study(self.get_study_by_id(study_id), verify=True)
        return self._mirror(study_id, repair=True, relink=True)

    def _mirror(self, study_id: int, *, repair: bool, relink: bool, wait: bool = True) -> int:
        """:meth:`mirror`; with ``relink``, first forget the Optuna trials that are gone, in the
        same transaction (under the same lock, so no other mirror writes them meanwhile)."""
        study = self._ensure_optuna_study(self.get_study_by_id(study_id))
        optuna_id = study.optuna_study_id
        assert optuna_id is not None
        query = sa.select(T).where(
            T.c.study_id == study_id, T.c.state.in_(FINISHED), T.c.optuna_trial_id.is_(None)
        )
        with self._errors(), self._write() as conn:
            if wait:
                advisory_lock(conn, study_id)
            elif not try_advisory_lock(conn, study_id):
                return 0  # another process is writing them (it waits for no one either)
            if relink:
                self._forget_lost(conn, study_id, optuna_id)
            rows = [row_from(TrialRow, m) for m in conn.execute(query.order_by(T.c.number)).mappings()]
            if rows or repair:
                # A study made before hpo named its objective gets the name (a user's names stay).
                optuna_mirror.add_metric_name(conn, optuna_id, spec_metric(study.spec))
            return self._mirror_rows(conn, study, optuna_id, rows, repair=repair) if rows else 0

    @staticmethod
    def _forget_lost(conn: Connection, study_id: int, optuna_id: int) -> None:
        """Mark unmirrored the finished trials whose recorded Optuna trial is not theirs any more
        (deleted, or its ``hpo_trial_id`` names another trial); the mirror then writes or re-links them."""
        query = sa.select(T.c.id, T.c.optuna_trial_id).where(
            T.c.study_id == study_id, T.c.state.in_(FINISHED), T.c.optuna_trial_id.is_not(None)
        )
        recorded: dict[int, int] = {hpo_id: optuna_trial for hpo_id, optuna_trial in conn.execute(query)}
        found = optuna_mirror.mirrored_trials(conn, optuna_id, recorded)
        lost = [hpo_id for hpo_id, optuna_trial in recorded.items() if found.get(hpo_id) != optuna_trial]
        for start in range(0, len(lost), 500):  # bounded IN lists, as mirrored_trials reads them
            conn.execute(
                sa.update(T).where(T.c.id.in_(lost[start : start + 500])).values(optuna_trial_id=None)
            )

    @staticmethod
    def _mirror_rows(
        conn: Connection, study: StudyRow, optuna_id: int, rows: Sequence[TrialRow], *, repair: bool
    ) -> int:
        """Write (or, with ``repair``, link where found) the Optuna trials of ``rows``, and record them."""
        study_id = study.id
        linked = optuna_mirror.mirrored_trials(conn, optuna_id, [r.id for r in rows]) if repair else {}
        for row in rows:
            if row.id in linked and row.intermediate:
                # Written before a crash, maybe without its intermediate values: complete it.
                optuna_mirror.insert_intermediate(conn, linked[row.id], row.intermediate)
        todo = [r for r in rows if r.id not in linked]
        stage_rows = conn.execute(sa.select(G).where(G.c.study_id == study_id)).mappings()
        stages = [row_from(StageRow, m) for m in stage_rows]
        parents = _parent_numbers(conn, todo)
        frozen = [
            optuna_mirror.frozen_trial(
                r,
                optuna_mirror.stage_distributions(stages, r.stage),
                study.name,
                parent_number=None if r.parent_id is None else parents.get(r.parent_id),
            )
            for r in todo
        ]
        written = optuna_mirror.insert_trials(conn, optuna_id, frozen)
        ids = {**linked, **{r.id: o for r, o in zip(todo, written, strict=True)}}
        conn.execute(
            sa.update(T)
            .where(T.c.id == sa.bindparam("hpo_id"), T.c.optuna_trial_id.is_(None))
            .values(optuna_trial_id=sa.bindparam("optuna_id")),
            [{"hpo_id": k, "optuna_id": v} for k, v in ids.items()],
        )
        return len(written)
