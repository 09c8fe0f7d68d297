"""``hpo db upgrade`` says what it did; ``hpo db repair`` rebuilds a broken Optuna view; a PostgreSQL
database that does not exist gets the command that creates it, from every command (one line, exit
code 1, no password)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import optuna
import pytest

from hpo.storage import Storage, TrialOutcome
from hpo.storage._migrate import OPTUNA_VERSION_TABLE, alembic_config, expected_revision
from tests.cli import ROOT, run_hpo
from tests.hpo.storage import helpers
from tests.hpo.storage.conftest import draft

SECRET = "s3cr3t-pw"
HEAD = expected_revision()


def _optuna_version(db: Path) -> str:
    import sqlite3

    with sqlite3.connect(db) as conn:
        return str(conn.execute(f"SELECT version_num FROM {OPTUNA_VERSION_TABLE}").fetchone()[0])


def _said(args: list[str], cwd: Path) -> str:
    proc = run_hpo(*args, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""  # a diagnostic, not data
    [line] = proc.stderr.splitlines()
    return line


def test_db_upgrade_says_what_it_did(tmp_path: Path) -> None:
    from alembic import command

    url = "sqlite:///hpo.db"
    line = _said(["db", "upgrade", "--db", url], tmp_path)
    optuna = _optuna_version(tmp_path / "hpo.db")
    assert (
        line
        == f"created hpo's tables (revision {HEAD}) and Optuna's tables (Optuna schema {optuna}) in {url}"
    )
    assert _said(["db", "upgrade", "--db", url], tmp_path) == (
        f"{url} is already at the latest schema (hpo {HEAD}, Optuna {optuna})"
    )
    absolute = f"sqlite:///{tmp_path / 'hpo.db'}"
    command.downgrade(alembic_config(absolute), "0003")
    assert _said(["db", "upgrade", "--db", url], tmp_path) == (
        f"upgraded hpo's tables from 0003 to {HEAD} in {url} (Optuna's tables already at {optuna})"
    )


def _finished_study(storage: Storage, name: str, n: int) -> None:
    """A study of ``n`` COMPLETE trials, mirrored into its Optuna study."""
    study, _ = storage.create_study(name, "{}", f"hash-{name}", "maximize", draft(0, n, 0))
    for trial in storage.trials(study.id):
        assert helpers.claim(storage, trial.id, "w", 60) is not None
        assert storage.finish(trial.id, "w", TrialOutcome("COMPLETE", 0.1 * trial.number))
    assert storage.mirror(study.id) == n


def _optuna_trials(storage: Storage, name: str) -> list[int]:
    """The hpo trial ids that Optuna sees in the study, by Optuna number."""
    trials = optuna.load_study(study_name=name, storage=storage.url).trials
    return [ft.user_attrs["hpo_trial_id"] for ft in sorted(trials, key=lambda ft: ft.number)]


def _repair(storage: Storage, cwd: Path, *name: str) -> list[str]:
    proc = run_hpo("db", "repair", *name, "--db", storage.url, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""  # a diagnostic, not data
    return proc.stderr.splitlines()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def test_db_repair_rebuilds_a_broken_optuna_view(
    tmp_path: Path, request: pytest.FixtureRequest, backend: str
) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'hpo.db'}"
    else:
        url = str(request.getfixturevalue("postgres_url"))  # shared: unique names, one study repaired
    storage = Storage(url)
    storage.upgrade()
    name = f"repair-{tmp_path.name}"
    try:
        _finished_study(storage, name, 5)
        study = storage.get_study(name)
        mirrored = [t.id for t in storage.trials(study.id)]
        assert _optuna_trials(storage, name) == mirrored
        lost = [t.optuna_trial_id for t in storage.trials(study.id)[-3:]]
        helpers.delete_optuna_trials(storage, [i for i in lost if i is not None])
        assert _optuna_trials(storage, name) == mirrored[:2]  # the view is broken

        assert _repair(storage, tmp_path, name) == [f"{name}: 3 trials re-mirrored"]
        assert _optuna_trials(storage, name) == mirrored  # every trial again, once
        assert _repair(storage, tmp_path, name) == [f"{name}: nothing to repair"]
    finally:
        if storage.find_study(name) is not None:
            storage.delete_study(name)
        storage.dispose()


def test_db_repair_without_a_name_repairs_every_study(tmp_path: Path) -> None:
    storage = Storage(f"sqlite:///{tmp_path / 'hpo.db'}")
    storage.upgrade()
    assert _repair(storage, tmp_path) == ["no studies: nothing to repair"]
    for name, n in (("first", 3), ("second", 2), ("third", 1)):
        _finished_study(storage, name, n)
    first = storage.trials(storage.get_study("first").id)
    helpers.delete_optuna_trials(storage, [t.optuna_trial_id for t in first[-1:] if t.optuna_trial_id])
    optuna.delete_study(study_name="second", storage=storage.url)  # the whole Optuna study gone

    assert _repair(storage, tmp_path) == [
        "first: 1 trial re-mirrored",
        "second: 2 trials re-mirrored",
        "third: nothing to repair",
    ]
    for name in ("first", "second", "third"):
        assert _optuna_trials(storage, name) == [t.id for t in storage.trials(storage.get_study(name).id)]


def test_db_repair_of_an_unknown_study_is_bad_input(tmp_path: Path) -> None:
    Storage(f"sqlite:///{tmp_path / 'hpo.db'}").upgrade()
    proc = run_hpo("db", "repair", "nope", "--db", "sqlite:///hpo.db", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == ["error: no study named 'nope'"]


@pytest.mark.services
@pytest.mark.parametrize(
    "args",
    [["db", "upgrade"], ["studies"], ["submit", str(ROOT / "examples" / "digits.yaml"), "--no-progress"]],
)
def test_a_missing_postgresql_database_gets_the_createdb_command(
    tmp_path: Path, postgres_url: str, args: list[str]
) -> None:
    parts = urlsplit(postgres_url)
    host, port = parts.hostname, parts.port or 5432
    url = f"postgresql+psycopg://postgres:{SECRET}@{host}:{port}/no_such_db_xyz"
    proc = run_hpo(*args, "--db", url, cwd=tmp_path)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert lines[0].endswith(
        f'database "no_such_db_xyz" does not exist; create it with: '
        f"createdb -h {host} -p {port} -U postgres no_such_db_xyz"
    ), lines[0]
    assert SECRET not in proc.stdout + proc.stderr
    assert list(tmp_path.iterdir()) == []
