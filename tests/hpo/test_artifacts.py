"""Artifact stores: URLs resolved as the design says, bytes in and out, and checks that fail early."""

from __future__ import annotations

import json
import socket
from dataclasses import fields
from pathlib import Path

import pytest
from optuna.artifacts import ArtifactMeta, FileSystemArtifactStore

from hpo.artifacts import (
    ARTIFACTS_ATTR_PREFIX,
    ArtifactNotFoundError,
    ArtifactStoreError,
    artifact_meta,
    open_store,
    remove_artifacts,
    resolve_store_url,
    store_path,
)


def test_the_setting_wins_and_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_store_url("sqlite:///x.db", "/artifacts") == "file:///artifacts"
    assert resolve_store_url("sqlite:///x.db", "runs/models") == f"file://{tmp_path}/runs/models"
    assert resolve_store_url("sqlite:///x.db", "file:///srv/a/") == "file:///srv/a"
    assert resolve_store_url("sqlite:///x.db", "file://localhost/srv/a") == "file:///srv/a"
    assert resolve_store_url("sqlite:///x.db", "s3://my-bucket/a/b/") == "s3://my-bucket/a/b"
    assert resolve_store_url("sqlite:///x.db", "s3://my-bucket") == "s3://my-bucket"
    assert resolve_store_url("sqlite:///x.db", "  ") == f"file://{tmp_path}/x.db.artifacts"  # empty: unset


def test_defaults_beside_a_sqlite_file_else_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_store_url("sqlite:///runs/hpo.db", None) == f"file://{tmp_path}/runs/hpo.db.artifacts"
    assert resolve_store_url("sqlite:////srv/hpo.db?timeout=5", None) == "file:///srv/hpo.db.artifacts"
    assert resolve_store_url("postgresql+psycopg://u@h/db", None) == f"file://{tmp_path}/hpo-artifacts"
    assert store_path(resolve_store_url("postgresql+psycopg://u@h/db", None)) == tmp_path / "hpo-artifacts"
    assert store_path("s3://my-bucket/p") is None


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("gs://bucket/x", "gs:// stores are not supported"),
        ("s3:bucket", "needs '//'"),
        ("s3://B_ad/x", "not an S3 bucket name"),
        ("file://host/x", "names no host"),
    ],
)
def test_malformed_urls_are_one_line_naming_the_setting(url: str, says: str) -> None:
    with pytest.raises(ArtifactStoreError) as info:
        resolve_store_url("sqlite:///x.db", url)
    message = str(info.value)
    assert says in message and "HPO_ARTIFACTS" in message and "--artifacts" in message
    assert "\n" not in message


def test_put_get_remove(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path / 'store'}")
    assert open_store(f"file://{tmp_path / 'store'}") is store  # one per process
    store.check()
    first, second = store.put(b"\x00model"), store.put(b"")
    assert first != second and len(first) == 36  # uuid4 text: fits hpo_trials.model (64)
    assert store.get(first) == b"\x00model" and store.get(second) == b""
    # What Optuna's own store reads: the same files, by the same ids.
    reader = FileSystemArtifactStore(str(tmp_path / "store")).open_reader(first)
    assert reader.read() == b"\x00model"
    reader.close()
    store.remove(first)
    store.remove(first)  # a missing id is fine
    with pytest.raises(ArtifactNotFoundError, match="not found"):
        store.get(first)
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == [second]  # the probe is gone


def test_a_check_leaves_nothing_and_put_makes_the_folder(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path / 'later' / 'store'}")
    store.check()
    assert list(tmp_path.iterdir()) == []  # the folders made for the probe are gone with it
    assert store.get(store.put(b"x")) == b"x"
    (tmp_path / "kept").mkdir()
    open_store(f"file://{tmp_path / 'kept'}").check()
    assert (tmp_path / "kept").is_dir()  # a folder that was there stays


def test_remove_artifacts_goes_on_and_says_what_was_left(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}")
    ids = [store.put(b"a"), store.put(b"b")]
    assert remove_artifacts(f"file://{tmp_path}", [*ids, "never-written"]) == ([], None)
    assert list(tmp_path.iterdir()) == []
    assert remove_artifacts(None, ["x"]) == ([], None)  # a study made before models were kept
    left, reason = remove_artifacts("gs://nope", ["x"])
    assert left == ["x"] and reason is not None and "not supported" in reason


def test_check_of_a_folder_that_cannot_be_made(tmp_path: Path) -> None:
    # Tests run as root, who may write anywhere: a folder under a regular file fails for anyone.
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ArtifactStoreError) as info:
        open_store(f"file://{blocker}/store").check()
    message = str(info.value)
    assert message.startswith(f"artifact store file://{blocker}/store is not writable: ")
    assert "Not a directory" in message and "HPO_ARTIFACTS" in message and "\n" not in message


def test_a_failed_check_leaves_no_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store(f"file://{tmp_path}/a/b")

    def refuse(artifact_id: str, body: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(store._store, "write", refuse)
    with pytest.raises(ArtifactStoreError, match="Permission denied"):
        store.check()
    assert list(tmp_path.iterdir()) == []


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the socket is: nothing listens there


def test_check_of_an_unreachable_s3_store(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("boto3")
    port = _closed_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "hpo-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hpo-test")
    url = f"s3://hpo-test-{port}/models"
    with pytest.raises(ArtifactStoreError) as info:
        open_store(url).check()
    message = str(info.value)
    assert message.startswith(f"artifact store {url} is not writable: ")
    assert f"127.0.0.1:{port}" in message and "\n" not in message


def test_artifact_meta_is_what_optuna_artifacts_reads() -> None:
    key, value = artifact_meta("0123", "study-trial-4.npz")
    from optuna.artifacts._upload import ARTIFACTS_ATTR_PREFIX as OPTUNAS

    assert key == ARTIFACTS_ATTR_PREFIX + "0123" == OPTUNAS + "0123"
    meta = json.loads(value)
    assert set(meta) == {f.name for f in fields(ArtifactMeta)}
    assert ArtifactMeta(**meta) == ArtifactMeta("0123", "study-trial-4.npz", "application/octet-stream", None)
