"""Every command refuses a malformed database or broker URL before doing anything.

Exit code 2, one line on stderr naming the option, no traceback, no password, and nothing
written: no SQLite or lock file, no message in Redis. A database or broker that cannot be used
(missing, refusing, unreachable) is one line and exit code 1. Each case is a real ``hpo``
process; the matrix is every command with one bad URL, and every bad URL kind with one command
(the checks themselves are tested case by case in ``test_urls.py``).
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

from hpo.storage import Storage
from tests.cli import ROOT, run_hpo

pytestmark = pytest.mark.services

SECRET = "s3cr3t-pw"
STUDY = str(ROOT / "examples" / "digits.yaml")
DB_FORMS = "use postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB or sqlite:///FILE"

# (command line, bad --db URL, what the message says): every command, each with another case.
COMMANDS = [
    (["submit", STUDY], f"postgresql+psycopg://u:{SECRET}@x@127.0.0.1/db", "the password contains '@'"),
    (["resume", "s"], "notaurl", f"not a URL: {DB_FORMS}"),
    (["status", "s"], "postgresql+psycopg://postgres@127.0.0.1:abc/db", "the port is not a number"),
    (["studies"], "postgresql+asyncpg://postgres@127.0.0.1/db", f"unsupported driver 'asyncpg': {DB_FORMS}"),
    (["best", "s"], "sqlite://", "in-memory"),
    (["trials", "s"], "sqlite:///typo.db", "no SQLite database 'typo.db'"),  # would create it
    (["export", "s"], f"postgresql+psycopg://u:{SECRET}/x@127.0.0.1/db", "the password contains '/'"),
    (["plot", "s"], "postgresql+psycopg://postgres@127.0.0.1:99999/db", "port 99999 is not in 1..65535"),
    (["cancel", "s"], "sqlite://host/hpo.db", "a SQLite URL has no host or user"),
    (["delete", "s", "--yes"], f"redis://:{SECRET}@127.0.0.1:6379/0", "unsupported database 'redis'"),
    (["db", "upgrade"], f"postgresql+psycopg://u:{SECRET}#x@127.0.0.1/db", "the password contains '#'"),
    (["worker"], "sqlite:///nodir/hpo.db", "no SQLite database 'nodir/hpo.db'"),
]


@pytest.fixture(autouse=True)
def _no_configured_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HPO_DATABASE_URL", raising=False)
    monkeypatch.delenv("HPO_BROKER_URL", raising=False)


@pytest.fixture
def redis_queue(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A queue of its own on the test Redis; the test fails if anything was sent to Redis."""
    queue = f"urls-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("HPO_QUEUE", queue)
    client = redis.Redis.from_url(redis_url)
    keys = set(client.keys())
    yield queue
    assert not client.exists(queue) and set(client.keys()) <= keys, "something was sent to Redis"
    client.close()


def _redis_parts(redis_url: str) -> tuple[str, str]:
    parts = urlsplit(redis_url)
    return f"{parts.hostname}:{parts.port}", parts.path.strip("/")


def _refused(proc: subprocess.CompletedProcess[str], option: str, expected: str) -> None:
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: {option}: ") and expected in lines[0], lines[0]
    assert SECRET not in proc.stdout + proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize(("args", "url", "expected"), COMMANDS, ids=[" ".join(c[0][:2]) for c in COMMANDS])
def test_every_command_refuses_a_bad_database_url(
    tmp_path: Path, args: list[str], url: str, expected: str
) -> None:
    _refused(run_hpo(*args, "--db", url, cwd=tmp_path), "--db", expected)
    assert list(tmp_path.iterdir()) == []  # no SQLite file, no lock file


def test_a_bad_database_url_from_the_environment_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HPO_DATABASE_URL", f"postgresql+psycopg://u:{SECRET}?x@127.0.0.1/db")
    _refused(run_hpo("studies", cwd=tmp_path), "HPO_DATABASE_URL", "the password contains '?'")
    assert list(tmp_path.iterdir()) == []


def test_a_missing_default_database_is_not_created(tmp_path: Path) -> None:
    _refused(run_hpo("best", "s", cwd=tmp_path), "--db", "no SQLite database 'hpo.db'")
    assert list(tmp_path.iterdir()) == []


BAD_BROKERS = [
    ("foo://x", "unsupported broker 'foo'"),
    ("redis://:{secret}@x@{host}/{db}", "the password contains '@'"),  # kombu would have sent it
    ("redis://:{secret}/x@{host}/{db}", "the password contains '/'"),
    ("redis://{host}:abc/{db}", "the port is not a number"),
    ("redis://{host}/abc", "Redis database 'abc' is not a number"),
    ("redis:///{db}", "no host"),
]


@pytest.mark.parametrize(("template", "expected"), BAD_BROKERS)
def test_submit_refuses_a_bad_broker_url(
    tmp_path: Path, redis_url: str, redis_queue: str, template: str, expected: str
) -> None:
    host, db = _redis_parts(redis_url)
    url = template.format(secret=SECRET, host=host, db=db)
    _refused(
        run_hpo("submit", STUDY, "--broker", url, "--db", "sqlite:///hpo.db", cwd=tmp_path),
        "--broker",
        expected,
    )
    assert list(tmp_path.iterdir()) == []


def test_a_database_number_the_server_lacks_is_bad_input(
    tmp_path: Path, redis_url: str, redis_queue: str
) -> None:
    host, _ = _redis_parts(redis_url)
    broker = f"redis://:{SECRET}@{host}/2147483647"  # well formed, but no server has that many
    proc = run_hpo("submit", STUDY, "--broker", broker, "--db", "sqlite:///hpo.db", cwd=tmp_path)
    _refused(proc, "broker URL", "the Redis server has no database 2147483647")
    assert list(tmp_path.iterdir()) == []
    db = tmp_path / "hpo.db"
    Storage(f"sqlite:///{db}").upgrade()
    before = sorted(tmp_path.iterdir())
    proc = run_hpo("worker", "--broker", broker, "--db", "sqlite:///hpo.db", cwd=tmp_path)
    _refused(proc, "broker URL", "the Redis server has no database 2147483647")  # not retried forever
    assert sorted(tmp_path.iterdir()) == before


@pytest.mark.parametrize("command", [["worker"], ["status", "s"]])
def test_a_bad_broker_url_from_the_environment_is_named(
    tmp_path: Path, redis_url: str, redis_queue: str, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    host, db = _redis_parts(redis_url)
    Storage(f"sqlite:///{tmp_path / 'hpo.db'}").upgrade()
    before = sorted(tmp_path.iterdir())
    monkeypatch.setenv("HPO_BROKER_URL", f"redis://:{SECRET}#x@{host}/{db}")
    _refused(run_hpo(*command, cwd=tmp_path), "HPO_BROKER_URL", "the password contains '#'")
    assert sorted(tmp_path.iterdir()) == before


def _failed(proc: subprocess.CompletedProcess[str], expected: str) -> None:
    lines = proc.stderr.splitlines()
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], proc.stderr
    assert SECRET not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("args", "database", "expected"),
    [
        (["studies"], "postgres@{host}/no_such_db", 'database "no_such_db" does not exist'),
        (["db", "upgrade"], "no_such_role:{secret}@{host}/postgres", 'role "no_such_role" does not exist'),
        (["best", "s"], "postgres:{secret}@{hostname}:1/postgres", "Connection refused"),
    ],
)
def test_an_unusable_postgresql_is_one_line_and_exit_1(
    tmp_path: Path, postgres_url: str, args: list[str], database: str, expected: str
) -> None:
    parts = urlsplit(postgres_url)
    url = "postgresql+psycopg://" + database.format(
        secret=SECRET, host=parts.netloc.rpartition("@")[2], hostname=parts.hostname
    )
    _failed(run_hpo(*args, "--db", url, cwd=tmp_path), expected)
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_redis_is_one_line_and_exit_1(tmp_path: Path) -> None:
    proc = run_hpo(
        "submit",
        STUDY,
        "--broker",
        f"redis://:{SECRET}@127.0.0.1:1/0",
        "--db",
        "sqlite:///hpo.db",
        cwd=tmp_path,
    )
    _failed(proc, "broker redis://:***@127.0.0.1:1/0 is unreachable")
    assert list(tmp_path.iterdir()) == []
