"""The reads of a large study (revision 0008): indexes that ``best``/``status`` use, and
trials streamed a batch at a time."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

import sqlalchemy as sa
from alembic import command

from hpo.storage import Storage, StudyRow, TrialOutcome, create_engine, current_revision, upgrade
from hpo.storage._migrate import alembic_config
from hpo.storage._models import Trial

from . import helpers

MakeStudy = Callable[..., StudyRow]
T = cast(sa.Table, Trial.__table__)
READ_INDEXES = {
    "ix_hpo_trials_study_state_value": ["study_id", "state", "value"],
    "ix_hpo_trials_study_stage_compute": ["study_id", "stage", "epochs_trained", "train_seconds"],
    "ix_hpo_trials_parent": ["parent_id"],
}


def _indexes(url: str) -> dict[str, list[str]]:
    return {ix["name"]: ix["column_names"] for ix in sa.inspect(create_engine(url)).get_indexes("hpo_trials")}


def test_0008_creates_the_read_indexes_and_downgrades(fresh_url: str) -> None:
    upgrade(fresh_url, "0007", optuna=False)
    assert not set(READ_INDEXES) & set(_indexes(fresh_url))
    upgrade(fresh_url, "0008", optuna=False)
    assert current_revision(fresh_url) == "0008"
    indexes = _indexes(fresh_url)
    assert {name: indexes.get(name) for name in READ_INDEXES} == READ_INDEXES
    command.downgrade(alembic_config(fresh_url), "0007")
    assert current_revision(fresh_url) == "0007"
    assert not set(READ_INDEXES) & set(_indexes(fresh_url))
    assert set(_indexes(fresh_url)) >= {"ix_hpo_trials_study_state", "ix_hpo_trials_state_enqueued"}
    upgrade(fresh_url, optuna=False)
    assert set(_indexes(fresh_url)) >= set(READ_INDEXES)


def _finish_all(storage: Storage, study: StudyRow, *, epochs: int = 3) -> None:
    for i, t in enumerate(storage.trials(study.id)):
        claimed = helpers.claim(storage, t.id, "w", 60)
        assert claimed is not None
        curves = [
            {
                "epoch": e,
                "train_loss": 1.0 / e,
                "train_acc": 0.5,
                "val_loss": 1.0,
                "val_acc": 0.1 * i,
                "seconds": 0.1,
            }
            for e in range(1, epochs + 1)
        ]
        outcome = TrialOutcome("COMPLETE", 0.1 * i, None, curves, {epochs: 0.1 * i}, epochs_trained=epochs)
        assert storage.finish(t.id, "w", outcome, attempt=claimed.attempts)


def _statements(storage: Storage, call: Callable[[], Any]) -> list[tuple[str, Any]]:
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_args: Any) -> None:
        if "hpo_trials" in statement:
            seen.append((statement, parameters))

    sa.event.listen(storage.engine, "before_cursor_execute", record)
    try:
        call()
    finally:
        sa.event.remove(storage.engine, "before_cursor_execute", record)
    return seen


def _plan(storage: Storage, statement: str, parameters: Any) -> str:
    """The query plan of a captured statement, sequential and bitmap scans disabled on
    PostgreSQL: the test database is shared and small, its statistics those of every test's
    rows, so the test asks whether the statement *can* be answered from the index (the
    benchmark shows that PostgreSQL's planner does so by itself at 100k trials). With 5,000 rows
    a bitmap heap scan of another index costs about as much, and the planner took it in about
    one run of three."""
    raw = storage.engine.raw_connection()
    try:
        cur = raw.cursor()
        if not storage.is_sqlite:
            cur.execute("SET LOCAL enable_seqscan = off")
            cur.execute("SET LOCAL enable_bitmapscan = off")
        explain = "EXPLAIN QUERY PLAN " if storage.is_sqlite else "EXPLAIN "
        cur.execute(explain + statement, parameters)
        plan = "\n".join(str(row[-1]) for row in cur.fetchall())
        raw.rollback()
        return plan
    finally:
        raw.close()


def _add_finished(storage: Storage, study: StudyRow, n: int) -> None:
    """``n`` more COMPLETE trials of stage 0 with 20-epoch curves, inserted directly, then
    VACUUM ANALYZE (what autovacuum would have done by then): on a table of a few rows SQLite's
    planner reads everything whatever the indexes."""
    record = {"train_loss": 1.0, "train_acc": 0.5, "val_loss": 1.0, "val_acc": 0.5, "seconds": 0.1}
    curves = json.dumps([{"epoch": e, **record} for e in range(1, 21)])
    rows = [
        {"study_id": study.id, "number": 100 + i, "stage": 0, "params": "{}", "seed": i, "state": "COMPLETE"}
        | {"attempts": 1, "value": (i % 997) / 1000, "epochs_trained": 3, "train_seconds": 0.5}
        | {"curves": curves, "created_at": datetime.now(UTC)}
        for i in range(n)
    ]
    with storage.engine.begin() as conn:
        conn.execute(sa.insert(T), rows)
    with storage.engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(sa.text("ANALYZE" if storage.is_sqlite else "VACUUM ANALYZE hpo_trials"))


def test_best_compute_and_promotions_read_their_index(storage: Storage, make_study: MakeStudy) -> None:
    study = make_study(6)
    _finish_all(storage, study)
    _add_finished(storage, study, 5000)
    expected = {
        "maximize": "ix_hpo_trials_study_state_value",
        "minimize": "ix_hpo_trials_study_state_value",
        "compute": "ix_hpo_trials_study_stage_compute",  # covering: SQLite says so, PostgreSQL "Index Only"
        "promotions": "ix_hpo_trials_parent",
    }
    calls = {
        "maximize": lambda: storage.best_trials(study.id, "maximize", 2),
        "minimize": lambda: storage.best_trials(study.id, "minimize", 2),
        "compute": lambda: storage.compute(study.id),
        "promotions": lambda: storage.promotions(study.id),
    }
    for what, call in calls.items():
        ((statement, parameters),) = _statements(storage, call)
        plan = _plan(storage, statement, parameters)
        # (SQLite, with no statistics, reads the promoted trials from the study's trials.)
        if not (what == "promotions" and storage.is_sqlite):
            assert expected[what] in plan, (what, plan)
        # A scan of the whole table, or (SQLite) a sort of every row the index range holds for
        # the ORDER BY value, would not grow well: best's order comes from the index.
        assert "Seq Scan" not in plan and "SCAN hpo_trials" not in plan, (what, plan)
        assert "USE TEMP B-TREE FOR ORDER BY" not in plan, (what, plan)
    # Ties on value go to the lower number (one stage here).
    best = [(t.value, t.number) for t in storage.best_trials(study.id, "maximize", 3)]
    assert best == [(0.996, 1096), (0.996, 2093), (0.996, 3090)]
    best = [(t.value, t.number) for t in storage.best_trials(study.id, "minimize", 3)]
    assert best == [(0.0, 0), (0.0, 100), (0.0, 1097)]
    assert storage.promotions(study.id) == []


def test_iter_trials_fetches_a_batch_at_a_time(storage: Storage, make_study: MakeStudy) -> None:
    """The listing and the export hold a batch of trials, never the study: a read that fetched
    every row at once (``.all()``, a client-side cursor) fails here."""
    study = make_study(12)
    _finish_all(storage, study, epochs=20)
    rows = storage.iter_trials(study.id, batch=2)
    assert inspect.isgenerator(rows)  # nothing is read before the caller asks
    cursors: list[Any] = []
    steps = [0]

    def count_step() -> int:
        steps[0] += 1
        return 0  # go on

    def on_execute(conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
        if "hpo_trials" not in statement:  # SQLite's BEGIN DEFERRED
            return
        cursors.append((conn.connection.dbapi_connection, cursor))
        if storage.is_sqlite:  # every virtual-machine instruction SQLite runs from here on
            conn.connection.dbapi_connection.set_progress_handler(count_step, 1)

    sa.event.listen(storage.engine, "before_cursor_execute", on_execute)
    try:
        first = next(rows)
        ((_, cursor),) = cursors
        after_first = steps[0]
        if not storage.is_sqlite:
            import psycopg

            assert isinstance(cursor, psycopg.ServerCursor)  # the rows stay on the server until fetched
            assert cursor.rownumber <= 2
        rest = list(rows)
    finally:
        sa.event.remove(storage.engine, "before_cursor_execute", on_execute)
        if storage.is_sqlite and cursors:
            cursors[0][0].set_progress_handler(None, 1)
    if storage.is_sqlite:
        # When the first row came back, SQLite had stepped through a few rows, not all twelve.
        assert 0 < after_first < steps[0] / 3, (after_first, steps[0])
    listed = [first, *rest]
    assert listed == storage.trials(study.id)
    assert [t.number for t in listed] == list(range(12))
    assert list(storage.trial_params(study.id, states=["COMPLETE"])) == [(t.params, t.reason) for t in listed]
