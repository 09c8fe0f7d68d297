"""The Celery app's configuration and the task's validation, without a broker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from celery.exceptions import ImproperlyConfigured, Reject

from hpo import HPOError, Settings, SpecError
from hpo._urls import redact_url
from hpo.orchestration import check_database_shareable
from workers.app import check_time_limits, create_app, node_name

ROOT = Path(__file__).resolve().parents[2]
BROKER = "redis://:s3cret@127.0.0.1:6379/15"


def _app(**overrides: object):  # type: ignore[no-untyped-def]
    return create_app(Settings(broker_url=BROKER, database_url="sqlite:////tmp/x.db", **overrides))  # type: ignore[arg-type]


def test_safe_delivery_settings() -> None:
    conf = _app().conf
    assert conf.accept_content == ["json"] and conf.task_serializer == "json"
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_ignore_result
    soft, hard = conf.task_soft_time_limit, conf.task_time_limit
    for options in (conf.broker_transport_options, conf.result_backend_transport_options):
        assert soft < hard < options["visibility_timeout"]
    assert conf.broker_connection_max_retries is None  # a worker started before Redis waits for it


@pytest.mark.parametrize(
    "limits",
    [
        {"task_time_limit": 100.0, "visibility_timeout": 100.0},
        {"task_time_limit": 100.0, "visibility_timeout": 50.0},
        {"task_time_limit": 100.0, "task_soft_time_limit": 100.0},
        {"task_time_limit": 100.0, "task_soft_time_limit": 200.0, "visibility_timeout": 300.0},
    ],
)
def test_conflicting_time_limits_refuse_to_start(limits: dict[str, float]) -> None:
    with pytest.raises(ImproperlyConfigured, match="visibility_timeout"):
        _app(**limits)


def test_check_time_limits_accepts_the_defaults() -> None:
    check_time_limits(*Settings().time_limits())


def test_no_broker_is_a_clear_error() -> None:
    with pytest.raises(ImproperlyConfigured, match="HPO_BROKER_URL"):
        create_app(Settings(broker_url=None))


def test_rediss_verifies_the_server_by_default() -> None:
    import ssl

    conf = create_app(Settings(broker_url="rediss://:pw@redis.example:6380/0")).conf
    assert conf.broker_use_ssl == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    conf = create_app(Settings(broker_url="rediss://redis.example:6380/0?ssl_cert_reqs=none")).conf
    assert conf.broker_use_ssl is None  # the URL's own choice stands


def test_passwords_are_redacted() -> None:
    assert redact_url(BROKER) == "redis://:***@127.0.0.1:6379/15"
    assert redact_url("rediss://user:pw@host:6380/0?x=1") == "rediss://user:***@host:6380/0?x=1"
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_worker_command_carries_no_password() -> None:
    from workers._executor import CeleryExecutor

    argv = CeleryExecutor(_app()).worker_command(concurrency=2, queues=None, loglevel="info")
    assert "s3cret" not in " ".join(argv)
    assert argv[-6:-2] == ["--concurrency=2", "--pool=prefork", "--loglevel=info", "--queues=hpo"]


def test_worker_command_names_the_node() -> None:
    from workers._executor import CeleryExecutor

    executor = CeleryExecutor(_app())

    def hostname(**kw: str) -> list[str]:
        argv = executor.worker_command(concurrency=1, queues=None, loglevel="info", **kw)
        return [a for a in argv if a.startswith("--hostname=")]

    # Unique per process by default: the PID of the process that execs the worker.
    assert hostname() == [f"--hostname=hpo-{os.getpid()}@%h"]
    assert hostname(name="gpu-1") == ["--hostname=gpu-1@%h"]
    assert hostname(name="gpu-%n@box.example") == ["--hostname=gpu-%n@box.example"]


@pytest.mark.parametrize("good", ["w1", "w_1.a-b", "hpo-%n", "a@%h", "a@b.example", "%h", "x" * 200])
def test_node_names_accepted(good: str) -> None:
    assert node_name(good) == (good if "@" in good else f"{good}@%h")


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "a b",
        "two\nlines",
        "trailing\n",
        "a\tb",
        "a,b",
        "a/b",
        "a@b@c",
        "@host",
        "name@",
        "x%p",
        "%%",
        "é",
        "x" * 201,
    ],
)
def test_node_names_refused(bad: str) -> None:
    with pytest.raises(SpecError, match=r"^--name: .* is not a worker name") as info:
        node_name(bad)
    assert "\n" not in str(info.value)  # one line, whatever the name holds


@pytest.mark.parametrize("bad", ["1; drop table hpo_trials", -5, 0, 1.5, None, [1], True])
def test_task_rejects_anything_but_a_positive_integer_id(bad: object) -> None:
    task = _app().tasks["hpo.run_trial"]
    with pytest.raises(Reject):
        task(bad)


def test_sqlite_must_be_a_file_on_this_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(HPOError, match="PostgreSQL"):
        check_database_shareable(f"sqlite:///{tmp_path / 'absent.db'}")
    (tmp_path / "here.db").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    assert check_database_shareable("sqlite:///here.db") == f"sqlite:///{tmp_path / 'here.db'}"
    pg = "postgresql+psycopg://u:p@db/hpo"
    assert check_database_shareable(pg) == pg


@pytest.mark.parametrize("given_as", ["--db", "HPO_DATABASE_URL"])
def test_a_worker_without_the_sqlite_file_is_told_what_works_on_another_host(
    tmp_path: Path, given_as: str
) -> None:
    url = f"sqlite:///{tmp_path / 'absent.db'}"
    args, env = (["--db", url], {}) if given_as == "--db" else ([], {"HPO_DATABASE_URL": url})
    proc = subprocess.run(
        [sys.executable, "-m", "hpo", "worker", "--broker", "redis://127.0.0.1:1/0", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
    )
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    (line,) = proc.stderr.strip().splitlines()  # one line, before anything is tried
    assert line.startswith(f"error: {given_as}: no SQLite database ") and "on this host" in line, line
    assert "workers on other hosts need PostgreSQL" in line, line


def test_importing_creates_no_app_and_hpo_never_imports_celery() -> None:
    code = (
        "import sys, workers, workers.app, workers.tasks, hpo, hpo.cli, hpo.orchestration._trial;"
        "print(workers.app.get_app.cache_info().currsize, 'workers._executor' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["0", "False"]
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "hpo").rglob("*.py")
        for line in path.read_text().splitlines()
        if line.strip().startswith(("import celery", "from celery", "import workers", "from workers"))
    ]
    assert offenders == []
