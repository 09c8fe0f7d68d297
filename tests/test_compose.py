"""docker-compose.yml, docker-compose.prod.yml and the Dockerfile, checked without Docker.

The compose files are parsed and their interpolation resolved the way ``docker compose`` does;
then the commands of the ``migrate`` and ``worker`` services run against the machine's Redis and
PostgreSQL, with the compose environment pointed at them.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "docker-compose.yml"
PROD = ROOT / "docker-compose.prod.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

SERVICES = {"redis", "postgres", "migrate", "worker", "flower", "dashboard"}
HPO_SERVICES = {"migrate", "worker", "flower", "dashboard"}
SECRETS = ("POSTGRES_PASSWORD", "REDIS_PASSWORD")


# --- compose interpolation -------------------------------------------------------------------


class InterpolationError(ValueError):
    """A required variable is unset, or an interpolation is malformed."""


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")


def interpolate(text: str, env: Mapping[str, str], *, require_default: bool = False) -> str:
    """Resolve compose's ``$$``, ``$X``, ``${X}``, ``${X:-d}``, ``${X-d}``, ``${X:?e}``, ``${X?e}``,
    ``${X:+a}``, ``${X+a}`` (defaults may themselves interpolate).

    Raises:
        InterpolationError: a ``?`` variable is unset (or empty with ``:?``), a syntax error, or
            with ``require_default``, a variable without a default that ``env`` does not set.
    """
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "$":
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1 : i + 2]
        if nxt == "$":
            out.append("$")
            i += 2
            continue
        if nxt != "{":
            m = _NAME.match(text, i + 1)
            if not m:
                raise InterpolationError(f"invalid interpolation at {i} in {text!r}")
            out.append(_value(m.group(), None, "", env, require_default))
            i = m.end()
            continue
        m = _NAME.match(text, i + 2)
        if not m:
            raise InterpolationError(f"invalid variable name at {i} in {text!r}")
        name, j = m.group(), m.end()
        op = next((o for o in _OPERATORS if text.startswith(o, j)), None)
        if op is None:
            if text[j : j + 1] != "}":
                raise InterpolationError(f"invalid interpolation of {name} in {text!r}")
            out.append(_value(name, None, "", env, require_default))
            i = j + 1
            continue
        start = k = j + len(op)
        depth = 1
        while k < len(text):  # the matching brace (a default may hold ${...} itself)
            if text[k] == "{":
                depth += 1
            elif text[k] == "}":
                depth -= 1
                if depth == 0:
                    break
            k += 1
        else:
            raise InterpolationError(f"unclosed interpolation of {name} in {text!r}")
        out.append(_value(name, op, text[start:k], env, require_default))
        i = k + 1
    return "".join(out)


def _value(name: str, op: str | None, arg: str, env: Mapping[str, str], require_default: bool) -> str:
    value = env.get(name)
    unset_or_empty = not value
    if op is None:
        if value is None and require_default:
            raise InterpolationError(f"{name} has no default")
        return value or ""
    if op in (":-", "-"):
        missing = unset_or_empty if op == ":-" else value is None
        return interpolate(arg, env, require_default=require_default) if missing else str(value)
    if op in (":?", "?"):
        missing = unset_or_empty if op == ":?" else value is None
        if missing:
            raise InterpolationError(f"required variable {name} is missing a value: {arg}")
        return str(value)
    present = not unset_or_empty if op == ":+" else value is not None
    return interpolate(arg, env, require_default=require_default) if present else ""


def resolve(node: Any, env: Mapping[str, str], *, require_default: bool = False) -> Any:
    """``node`` with every string value interpolated (compose interpolates values, not keys)."""
    if isinstance(node, str):
        return interpolate(node, env, require_default=require_default)
    if isinstance(node, dict):
        return {k: resolve(v, env, require_default=require_default) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(v, env, require_default=require_default) for v in node]
    return node


def merge(base: Any, override: Any) -> Any:
    """Compose's multi-file merge, as far as these files need it: mappings merge key by key,
    anything else (command, healthcheck test...) is replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = merge(base[key], value) if key in base else value
        return merged
    return override


def load(path: Path) -> dict[str, Any]:
    with path.open() as f:
        data = yaml.safe_load(f)
    assert isinstance(data, dict), f"{path.name} is not a mapping"
    return data


@pytest.fixture(scope="module")
def base_raw() -> dict[str, Any]:
    return load(BASE)


@pytest.fixture(scope="module")
def base(base_raw: dict[str, Any]) -> dict[str, Any]:
    """The base file resolved with an empty environment (it must not need one)."""
    return resolve(base_raw, {}, require_default=True)


@pytest.fixture(scope="module")
def services(base: dict[str, Any]) -> dict[str, Any]:
    return base["services"]


@pytest.fixture(scope="module")
def prod_raw() -> dict[str, Any]:
    return load(PROD)


def command_argv(service: Mapping[str, Any]) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


# --- the resolver itself ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("${X:-d}", {}, "d"),
        ("${X:-d}", {"X": ""}, "d"),
        ("${X:-d}", {"X": "v"}, "v"),
        ("${X-d}", {}, "d"),
        ("${X-d}", {"X": ""}, ""),
        ("${X:?e}", {"X": "v"}, "v"),
        ("${X}", {"X": "v"}, "v"),
        ("a$${X}b", {}, "a${X}b"),
        ("$X/$$Y", {"X": "v"}, "v/$Y"),
        ("${X:-${Y:-z}}", {}, "z"),
        ("${X:+on}", {"X": "1"}, "on"),
        ("${X:+on}", {}, ""),
        ("p://${U:-hpo}:${P:-hpo}@h/${D:-hpo}", {"P": "s3"}, "p://hpo:s3@h/hpo"),
    ],
)
def test_interpolate(text: str, env: dict[str, str], expected: str) -> None:
    assert interpolate(text, env) == expected


@pytest.mark.parametrize(
    ("text", "env", "require_default"),
    [
        ("${X:?set X}", {}, False),
        ("${X:?set X}", {"X": ""}, False),
        ("${X?set X}", {}, False),
        ("${X}", {}, True),
        ("$X", {}, True),
        ("${X:-d", {}, False),
        ("${1X}", {}, False),
    ],
)
def test_interpolate_refuses(text: str, env: dict[str, str], require_default: bool) -> None:
    with pytest.raises(InterpolationError):
        interpolate(text, env, require_default=require_default)


# --- docker-compose.yml ----------------------------------------------------------------------


def test_base_resolves_with_an_empty_environment(base_raw: dict[str, Any], base: dict[str, Any]) -> None:
    # `base` already required a default for every variable; what is left of "${" comes from the
    # "$${" escapes, which the containers' shells expand.
    raw_text = BASE.read_text()
    escaped = raw_text.count("$${")
    assert raw_text.count("${") - escaped > 5  # the file does interpolate
    assert yaml.safe_dump(base, width=10**6).count("${") == escaped
    # Overriding a default works (the defaults are not hard-coded next to the variables).
    custom = resolve(base_raw, {"POSTGRES_PASSWORD": "s3cret", "POSTGRES_DB": "db1"})
    url = custom["services"]["worker"]["environment"]["HPO_DATABASE_URL"]
    assert url == "postgresql+psycopg://hpo:s3cret@postgres:5432/db1"


def test_services(services: dict[str, Any]) -> None:
    assert set(services) == SERVICES


def test_healthchecks(services: dict[str, Any]) -> None:
    redis_test = services["redis"]["healthcheck"]["test"]
    assert "redis-cli ping" in " ".join(redis_test if isinstance(redis_test, list) else [redis_test])
    pg_test = services["postgres"]["healthcheck"]["test"]
    assert "pg_isready" in " ".join(pg_test if isinstance(pg_test, list) else [pg_test])


def test_redis_persists(services: dict[str, Any]) -> None:
    redis = services["redis"]
    assert redis["image"].split(":")[0] == "redis" and redis["image"].split(":")[1].startswith("7")
    argv = command_argv(redis)
    assert argv[argv.index("--appendonly") + 1] == "yes"
    assert any(str(v).endswith(":/data") for v in redis["volumes"])


def test_postgres(services: dict[str, Any]) -> None:
    pg = services["postgres"]
    assert pg["image"].startswith("postgres:16")
    assert pg["environment"] == {"POSTGRES_USER": "hpo", "POSTGRES_PASSWORD": "hpo", "POSTGRES_DB": "hpo"}
    assert any(str(v).endswith(":/var/lib/postgresql/data") for v in pg["volumes"])


def _conditions(service: Mapping[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on", {})
    assert isinstance(deps, dict), "depends_on needs the long form with conditions"
    return {name: spec["condition"] for name, spec in deps.items()}


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
    assert command_argv(services["worker"]) == ["hpo", "worker", "--loglevel", "info"]
    flower = command_argv(services["flower"])
    assert flower[:4] == ["celery", "-A", "workers.app:app", "flower"] and "--port=5555" in flower
    dashboard = " ".join(command_argv(services["dashboard"]))
    # The URL is the container's variable ($$ escapes compose), not the host's (unset there).
    assert 'optuna-dashboard "${HPO_DATABASE_URL}" --host 0.0.0.0 --port 8080' in dashboard


def test_worker_is_scalable(base_raw: dict[str, Any], services: dict[str, Any]) -> None:
    worker = services["worker"]
    assert "container_name" not in worker and "hostname" not in worker
    assert not worker.get("ports"), "host ports would make `--scale worker=N` collide"
    assert "container_name" not in yaml.safe_dump(base_raw["services"]["worker"])


def _published(service: Mapping[str, Any]) -> dict[int, str]:
    """Container port -> host side ("addr:port") of a service's short-syntax ports."""
    found = {}
    for entry in service.get("ports", []):
        host, _, container = str(entry).rpartition(":")
        found[int(container.split("/")[0])] = host
    return found


def test_published_ports(services: dict[str, Any]) -> None:
    assert _published(services["flower"]) == {5555: "127.0.0.1:5555"}
    assert _published(services["dashboard"]) == {8080: "127.0.0.1:8080"}
    # Submitting from the host needs Redis and PostgreSQL, on loopback unless told otherwise.
    assert _published(services["redis"]) == {6379: "127.0.0.1:6379"}
    assert _published(services["postgres"]) == {5432: "127.0.0.1:5432"}


def test_hpo_environment(base_raw: dict[str, Any], services: dict[str, Any]) -> None:
    anchor = base_raw["x-hpo-env"]
    for name in HPO_SERVICES:
        env = services[name]["environment"]
        assert env["HPO_DATABASE_URL"] == "postgresql+psycopg://hpo:hpo@postgres:5432/hpo", name
        assert env["HPO_BROKER_URL"] == "redis://redis:6379/0", name
        # The anchor, merged: one definition for every service.
        assert base_raw["services"][name]["environment"] == anchor, name


def test_worker_mounts(services: dict[str, Any]) -> None:
    volumes = services["worker"]["volumes"]
    assert "./examples:/app/examples:ro" in volumes
    assert "./data:/data:ro" in volumes
    custom = resolve(load(BASE), {"HPO_DATA_DIR": "/srv/datasets"})
    assert "/srv/datasets:/data:ro" in custom["services"]["worker"]["volumes"]


def test_hpo_services_share_the_built_image(services: dict[str, Any]) -> None:
    images = {services[name]["image"] for name in HPO_SERVICES}
    assert images == {"hpo:latest"}
    for name in HPO_SERVICES:
        assert services[name]["build"]["context"] == "."


# --- docker-compose.prod.yml -----------------------------------------------------------------


def test_prod_requires_the_secrets(base_raw: dict[str, Any], prod_raw: dict[str, Any]) -> None:
    with pytest.raises(InterpolationError, match="POSTGRES_PASSWORD"):
        resolve(prod_raw, {"REDIS_PASSWORD": "r"})
    with pytest.raises(InterpolationError, match="REDIS_PASSWORD"):
        resolve(prod_raw, {"POSTGRES_PASSWORD": "p"})
    with pytest.raises(InterpolationError):
        resolve(prod_raw, {"POSTGRES_PASSWORD": "", "REDIS_PASSWORD": ""})  # empty is not a password
    # Every use of a secret in the override is the failing-fast form, never a default.
    text = PROD.read_text()
    for secret in SECRETS:
        uses = re.findall(r"\$\{" + secret + r"([^A-Za-z0-9_][^}]*)?\}", text)
        assert uses and all(u.startswith(":?") for u in uses), (secret, uses)


def test_prod_merged(base_raw: dict[str, Any], prod_raw: dict[str, Any]) -> None:
    env = {"POSTGRES_PASSWORD": "pgsecret", "REDIS_PASSWORD": "redissecret"}
    merged = merge(resolve(base_raw, env), resolve(prod_raw, env))
    services = merged["services"]
    assert set(services) == SERVICES
    for name in HPO_SERVICES:
        service_env = services[name]["environment"]
        assert service_env["HPO_DATABASE_URL"] == "postgresql+psycopg://hpo:pgsecret@postgres:5432/hpo"
        assert service_env["HPO_BROKER_URL"] == "redis://:redissecret@redis:6379/0"
    argv = command_argv(services["redis"])
    assert argv[argv.index("--requirepass") + 1] == "redissecret"
    assert argv[argv.index("--appendonly") + 1] == "yes"
    assert services["redis"]["environment"]["REDISCLI_AUTH"] == "redissecret"  # the healthcheck
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == "pgsecret"
    assert "container_name" not in services["worker"] and not services["worker"].get("ports")


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
    assert re.search(r"pip install [^&]*\bflower\b", runs)
    env = " ".join(args for kw, args in final_stage if kw == "ENV")
    assert "PYTHONUNBUFFERED=1" in env
    assert any(kw in ("ENTRYPOINT", "CMD") for kw, _ in final_stage)
    copied = " ".join(args for kw, args in instructions if kw == "COPY")
    assert "data" not in copied.split() and "examples" not in copied  # no data baked in
    # flower is for the image only, never a dependency of the project.
    assert "flower" not in (ROOT / "pyproject.toml").read_text()


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


def _hpo_argv(argv: list[str]) -> list[str]:
    """The compose command, run with this interpreter's hpo (the image's PATH has it first)."""
    if argv[0] == "hpo":
        exe = Path(sys.executable).parent / "hpo"
        return [str(exe if exe.exists() else shutil.which("hpo") or "hpo"), *argv[1:]]
    return argv


def _service_env(
    service: Mapping[str, Any], database_url: str, broker_url: str, **extra: str
) -> dict[str, str]:
    env = dict(os.environ)
    env.update({k: str(v) for k, v in service["environment"].items()})
    assert "HPO_DATABASE_URL" in env and "HPO_BROKER_URL" in env
    env.update(HPO_DATABASE_URL=database_url, HPO_BROKER_URL=broker_url, **extra)
    return env


@pytest.mark.services
def test_migrate_command(services: dict[str, Any], postgres_url: str, redis_url: str) -> None:
    from hpo.storage._migrate import current_revision, head_revision

    argv = _hpo_argv(command_argv(services["migrate"]))
    env = _service_env(services["migrate"], postgres_url, redis_url)
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert current_revision(postgres_url) == head_revision()
    # The one-off runs on every `docker compose up`: a second run is a no-op that succeeds.
    again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert again.returncode == 0, again.stderr


class _Worker:
    """The worker service's command in its own session, its output collected."""

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


@pytest.mark.services
@pytest.mark.slow
def test_worker_command_runs_a_study(
    services: dict[str, Any], postgres_url: str, redis_url: str, tmp_path: Path, unique_name: str
) -> None:
    from hpo.storage import Storage

    # What `depends_on: migrate: service_completed_successfully` guarantees.
    migrate = _hpo_argv(command_argv(services["migrate"]))
    migrated = subprocess.run(
        migrate,
        env=_service_env(services["migrate"], postgres_url, redis_url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrated.returncode == 0, migrated.stderr

    queue = f"hpo-{unique_name}"  # this test's own queue: nothing else consumes or fills it
    study_file = tmp_path / "tiny.yaml"
    study_file.write_text(TINY_STUDY.format(name=unique_name))
    worker_env = _service_env(services["worker"], postgres_url, redis_url, HPO_QUEUE=queue)
    worker = _Worker(_hpo_argv(command_argv(services["worker"])), worker_env)
    try:
        ready = worker.wait_ready(timeout=20)
        assert worker.proc.poll() is None, f"the worker exited:\n{worker.output}"
        if not ready:  # slow start: the queue holds the messages until it consumes
            print(f"worker not ready after 20 s, submitting anyway:\n{worker.output}")
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
    finally:
        worker.stop()
        try:
            Storage(postgres_url).delete_study(unique_name)
        except Exception as exc:  # never created (submit failed early): nothing to delete
            print(f"cleanup: {exc}")
