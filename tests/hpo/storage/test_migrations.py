"""Migrations: upgrade from empty, no autogenerate drift, and coexistence with Optuna's tables."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import optuna
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from hpo.storage import (
    VERSION_TABLE,
    Storage,
    create_engine,
    current_revision,
    head_revision,
    upgrade,
)
from hpo.storage._migrate import expected_revision, include_name, include_object, script_location
from hpo.storage._models import metadata

from .conftest import draft

HPO_TABLES = {"hpo_studies", "hpo_stages", "hpo_trials", VERSION_TABLE}
REPO = Path(__file__).resolve().parents[3]
# The newest migration: one file per revision, numbered from 0001.
HEAD = f"{len(list((REPO / 'migrations' / 'versions').glob('[0-9]*.py'))):04d}"


def _tables(url: str) -> set[str]:
    return set(sa.inspect(create_engine(url)).get_table_names())


def _drift(url: str, target: sa.MetaData = metadata) -> list[object]:
    with create_engine(url).connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "include_name": include_name,
                "include_object": include_object,
                "compare_type": True,
                "version_table": VERSION_TABLE,
                "target_metadata": target,
            },
        )
        return list(compare_metadata(context, target))


def _optuna_objective(trial: optuna.Trial) -> float:
    return trial.suggest_float("x", -1, 1) ** 2


def test_script_location_is_the_top_level_migrations_dir() -> None:
    assert script_location().resolve() == (REPO / "migrations").resolve()
    assert head_revision() == HEAD  # the newest file in migrations/versions
    assert expected_revision() == HEAD  # what check_schema expects, without importing Alembic
    # Every version file is named by its revision, and they form one chain from 0001.
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory(str(script_location()))
    chain = [s.revision for s in scripts.walk_revisions()][::-1]
    assert chain == [f"{i:04d}" for i in range(1, len(chain) + 1)]
    files = sorted(p.name[:4] for p in (script_location() / "versions").glob("*.py"))
    assert files == chain


def test_upgrade_empty_database_to_head(fresh_url: str) -> None:
    assert current_revision(fresh_url) is None
    upgrade(fresh_url, optuna=False)
    assert _tables(fresh_url) == HPO_TABLES  # our version table, never Optuna's alembic_version
    assert current_revision(fresh_url) == head_revision()
    with create_engine(fresh_url).connect() as conn:
        assert conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all() == [HEAD]
    upgrade(fresh_url, optuna=False)  # idempotent
    assert current_revision(fresh_url) == HEAD


def test_no_autogenerate_drift_next_to_optuna_tables(fresh_url: str) -> None:
    Storage(fresh_url).upgrade()  # ours and Optuna's tables
    tables = _tables(fresh_url)
    assert tables >= HPO_TABLES | {"studies", "trials", "alembic_version"}
    assert _drift(fresh_url) == []
    # The comparison is not vacuous: a change to our models is reported...
    changed = sa.MetaData()
    for table in metadata.sorted_tables:
        table.to_metadata(changed)
    changed.tables["hpo_trials"].append_column(sa.Column("extra", sa.Integer))
    assert [d[0] for d in _drift(fresh_url, changed)] == ["add_column"]  # type: ignore[index]
    # ...while Optuna's tables, absent from our metadata, are never proposed for removal.


def test_our_upgrade_after_optuna_created_its_tables(fresh_url: str) -> None:
    study = optuna.create_study(study_name="theirs", storage=fresh_url)
    study.optimize(_optuna_objective, n_trials=3)
    optuna_rev = _alembic_version(fresh_url)
    Storage(fresh_url).upgrade()
    assert current_revision(fresh_url) == head_revision()
    assert _alembic_version(fresh_url) == optuna_rev
    assert len(optuna.load_study(study_name="theirs", storage=fresh_url).trials) == 3
    assert _drift(fresh_url) == []


def test_optuna_after_our_upgrade(fresh_url: str) -> None:
    upgrade(fresh_url, optuna=False)
    study = optuna.create_study(study_name="theirs", storage=fresh_url)  # Optuna creates its tables
    study.optimize(_optuna_objective, n_trials=2)
    assert len(optuna.load_study(study_name="theirs", storage=fresh_url).trials) == 2
    assert current_revision(fresh_url) == head_revision()
    Storage(fresh_url).upgrade()
    assert _drift(fresh_url) == []
    # And our studies work in the same database.
    storage = Storage(fresh_url)
    storage.create_study("ours", "{}", "h", "minimize", draft(0, 2, 0))
    assert optuna.load_study(study_name="ours", storage=fresh_url).direction.name == "MINIMIZE"
    assert len(optuna.load_study(study_name="theirs", storage=fresh_url).trials) == 2


def _alembic_version(url: str) -> str:
    with create_engine(url).connect() as conn:
        return str(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one())


def test_concurrent_upgrades_of_an_empty_database(fresh_url: str) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def run() -> None:
        try:
            barrier.wait()
            upgrade(fresh_url)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert current_revision(fresh_url) == head_revision()
    assert _drift(fresh_url) == []


def test_alembic_command_line(sqlite_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(REPO / "migrations" / "alembic.ini"), "upgrade", "head"],
        env={"HPO_DATABASE_URL": sqlite_url, "PATH": ""},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert current_revision(sqlite_url) == HEAD
    assert "alembic_version" not in _tables(sqlite_url)


def test_module_upgrade_command(sqlite_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hpo.storage", "upgrade", sqlite_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert HEAD in result.stdout
    assert {"hpo_studies", "studies"} <= _tables(sqlite_url)


def test_import_does_no_work() -> None:
    code = (
        "import os; hooks = []; real = os.register_at_fork; "
        "os.register_at_fork = lambda **kw: (hooks.append(kw), real(**kw)); "
        "import sys, hpo.storage, hpo.storage._engine as e; "
        "assert not e._engines, e._engines; "
        # The caches' fork hooks are registered at their first use, not at import.
        "assert not [h for h in hooks if h['after_in_child'].__module__.startswith('hpo')], hooks; "
        "assert 'optuna' not in sys.modules and 'psycopg' not in sys.modules; "
        "print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "ok", result.stderr
