"""The artifact store at the command line: chosen and checked at submission, stored on the study,
and emptied by ``hpo delete``."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa

from hpo.artifacts import open_store
from hpo.storage import Storage
from tests.cli import run_hpo

STUDY = """\
name: {name}
seed: 1
dataset: {{kind: digits, subset: 200}}
model: {{hidden_sizes: [8]}}
training: {{epochs: 1, batch_size: 50}}
search:
  trials: 2
  parameters:
    lr: {{type: float, low: 1.0e-3, high: 1.0, log: true}}
"""


def _study(tmp: Path, name: str = "s") -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(STUDY.format(name=name))
    return path


def _submit(tmp: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = ["submit", str(_study(tmp)), "--db", f"sqlite:///{tmp / 'hpo.db'}", "--no-progress", "-w", "1"]
    if env is None:
        return run_hpo(*command, *args, cwd=tmp)
    import sys

    return subprocess.run(
        [sys.executable, "-m", "hpo", *command, *args],
        cwd=tmp, capture_output=True, text=True, timeout=300, env={**os.environ, **env},
    )  # fmt: skip


def test_submit_keeps_the_store_beside_the_sqlite_file_by_default(tmp_path: Path) -> None:
    done = _submit(tmp_path)
    assert done.returncode == 0, done.stderr
    study = Storage(f"sqlite:///{tmp_path / 'hpo.db'}").get_study("s")
    assert study.artifacts == f"file://{tmp_path / 'hpo.db.artifacts'}"
    assert (tmp_path / "hpo.db.artifacts").is_dir()
    # The check left nothing (its probe is gone): the folder holds the trials' models, which
    # the first of them made again, and nothing else.
    models = sorted(t.model for t in Storage(f"sqlite:///{tmp_path / 'hpo.db'}").trials(study.id) if t.model)
    assert models and sorted(p.name for p in (tmp_path / "hpo.db.artifacts").iterdir()) == models


@pytest.mark.parametrize("how", ["option", "environment"])
def test_the_store_can_be_chosen_and_is_stored_absolute(tmp_path: Path, how: str) -> None:
    if how == "option":
        done = _submit(tmp_path, "--artifacts", "models")
    else:
        done = _submit(tmp_path, env={"HPO_ARTIFACTS": "models"})
    assert done.returncode == 0, done.stderr
    study = Storage(f"sqlite:///{tmp_path / 'hpo.db'}").get_study("s")
    assert study.artifacts == f"file://{tmp_path / 'models'}"


def _refused(done: subprocess.CompletedProcess[str], tmp: Path) -> str:
    """The one line of a refused submission, after checking that nothing was written."""
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: artifact store "), done.stderr
    assert "is not writable" in lines[0] and "HPO_ARTIFACTS / --artifacts" in lines[0]
    assert sorted(p.name for p in tmp.iterdir()) == ["file", "s.yaml"]  # no database, no folder
    return lines[0]


def test_an_unwritable_folder_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    # Tests run as root, who may write anywhere: a folder under a regular file fails for anyone.
    (tmp_path / "file").write_text("not a folder")
    line = _refused(_submit(tmp_path, "--artifacts", str(tmp_path / "file" / "models")), tmp_path)
    assert "Not a directory" in line


def test_an_unreachable_s3_store_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    pytest.importorskip("boto3")
    (tmp_path / "file").write_text("keeps the listing alike")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the socket is: nothing listens there
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "t"}
    env["AWS_SECRET_ACCESS_KEY"] = "t"
    line = _refused(_submit(tmp_path, "--artifacts", "s3://hpo-test/models", env=env), tmp_path)
    assert f"127.0.0.1:{port}" in line


def _name_artifacts(storage: Storage, name: str) -> list[Path]:
    """Put a model and a checkpoint of the study's trials in its store (as workers do), and name
    them in its rows; their files."""
    study = storage.get_study(name)
    assert study.artifacts is not None
    store = open_store(study.artifacts)
    trials = storage.trials(study.id)
    for t in trials:  # the models the trials kept make way for these (the store holds only them)
        if t.model:
            store.remove(t.model)
    ids = {t.id: (store.put(b"model"), store.put(b"checkpoint")) for t in trials}
    with storage.engine.begin() as conn:
        for trial_id, (model, checkpoint) in ids.items():
            conn.execute(
                sa.text("UPDATE hpo_trials SET model = :m, checkpoint = :c WHERE id = :i"),
                {"m": model, "c": checkpoint, "i": trial_id},
            )
    assert store.folder is not None
    return [store.folder / a for pair in ids.values() for a in pair]


def test_delete_removes_the_study_artifacts(tmp_path: Path) -> None:
    assert _submit(tmp_path).returncode == 0
    storage = Storage(f"sqlite:///{tmp_path / 'hpo.db'}")
    files = _name_artifacts(storage, "s")
    assert len(files) == 4 and all(f.is_file() for f in files)
    (tmp_path / "hpo.db.artifacts" / "someone-elses").write_bytes(b"x")  # not the study's: stays
    deleted = run_hpo("delete", "s", "--db", storage.url, "--yes", cwd=tmp_path)
    assert deleted.returncode == 0, deleted.stderr
    assert "study s deleted (4 artifacts removed)" in deleted.stderr
    assert not any(f.exists() for f in files)
    assert [p.name for p in (tmp_path / "hpo.db.artifacts").iterdir()] == ["someone-elses"]
    assert storage.find_study("s") is None


def test_delete_with_a_broken_store_deletes_the_rows_and_says_what_was_left(tmp_path: Path) -> None:
    assert _submit(tmp_path).returncode == 0
    storage = Storage(f"sqlite:///{tmp_path / 'hpo.db'}")
    files = _name_artifacts(storage, "s")
    (tmp_path / "file").write_text("not a folder")
    with storage.engine.begin() as conn:  # the store is gone (here: a file took the folder's place)
        conn.execute(sa.text("UPDATE hpo_studies SET artifacts = :a"), {"a": f"file://{tmp_path / 'file'}"})
    deleted = run_hpo("delete", "s", "--db", storage.url, "--yes", cwd=tmp_path)
    assert deleted.returncode == 0, deleted.stderr
    assert storage.find_study("s") is None
    warning = [line for line in deleted.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1, deleted.stderr
    assert f"4 artifacts of study s were left in file://{tmp_path / 'file'}" in warning[0]
    assert files[0].name in warning[0] and "Not a directory" in warning[0]


@pytest.mark.services
def test_broker_mode_checks_the_store_before_writing_or_queueing(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uuid

    import redis

    queue = f"artifacts-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("HPO_QUEUE", queue)
    client = redis.Redis.from_url(redis_url)
    (tmp_path / "file").write_text("not a folder")
    done = _submit(tmp_path, "--broker", redis_url, "--artifacts", str(tmp_path / "file" / "models"))
    line = _refused(done, tmp_path)
    assert "Not a directory" in line
    assert not client.exists(queue)  # nothing queued either
    client.close()
