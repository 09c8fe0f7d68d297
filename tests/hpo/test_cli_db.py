"""``hpo db upgrade`` says what it did; a PostgreSQL database that does not exist gets the command
that creates it, from every command (one line, exit code 1, no password)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from hpo.storage._migrate import HEAD_REVISION, OPTUNA_VERSION_TABLE, alembic_config
from tests.cli import ROOT, run_hpo

SECRET = "s3cr3t-pw"
HEAD = HEAD_REVISION


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
