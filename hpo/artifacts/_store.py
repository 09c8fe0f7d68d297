"""An artifact store opened from its URL: put, get and remove bytes by id, and check it first.

The stores are Optuna's (``optuna.artifacts.FileSystemArtifactStore``, ``Boto3ArtifactStore``),
so that ``optuna-dashboard`` reads what hpo writes. Each process opens a store once
(:class:`hpo._process_cache.ProcessCache`: a forked child opens its own, as a boto3 client must
not cross a fork).
"""

from __future__ import annotations

import contextlib
import io
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .._process_cache import ProcessCache
from ._errors import SETTING, ArtifactNotFoundError, ArtifactStoreError
from ._urls import parse_store_url

__all__ = ["Artifacts", "open_store", "remove_artifacts"]

_PROBE = b"hpo artifact store probe\n"


def _reason(exc: BaseException) -> str:
    """One line saying what went wrong: an OSError's text names no class, botocore's often none."""
    text = " ".join(str(exc).split())
    if isinstance(exc, ArtifactStoreError) or (text and type(exc).__name__ in text):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Artifacts:
    """One artifact store: bytes in, an id out (a new uuid4), and back.

    Every failure of the store is an :class:`ArtifactStoreError` naming its URL (a missing id:
    :class:`ArtifactNotFoundError`). Open it with :func:`open_store`.

    Args:
        url: ``file:///DIR`` (or a path) or ``s3://BUCKET[/PREFIX]``.

    Raises:
        ArtifactStoreError: The URL is malformed, or boto3 is missing for an ``s3://`` store.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.kind, where = parse_store_url(url)
        self.folder: Path | None = Path(where) if self.kind == "file" else None
        self._prefix = ""
        self._store: Any = None
        if self.kind == "s3":
            bucket, _, prefix = where.partition("/")
            self._prefix = prefix + "/" if prefix else ""
            self._store = _boto3_store(bucket, url)
        else:
            from optuna.artifacts import FileSystemArtifactStore

            self._store = FileSystemArtifactStore(where)

    def __repr__(self) -> str:
        return f"Artifacts({self.url!r})"

    def _key(self, artifact_id: str) -> str:
        # S3 keys under the URL's prefix; the id stays the uuid that hpo's tables and Optuna hold.
        return self._prefix + artifact_id

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        from optuna.artifacts.exceptions import ArtifactNotFound

        try:
            yield
        except ArtifactNotFound as exc:
            raise ArtifactNotFoundError(f"artifact store {self.url}: {doing}: not found") from exc
        except ArtifactStoreError:
            raise
        except Exception as exc:  # OSError, botocore's errors: the store's failure, not hpo's bug
            if _not_found(exc):
                raise ArtifactNotFoundError(f"artifact store {self.url}: {doing}: not found") from exc
            raise ArtifactStoreError(f"artifact store {self.url}: {doing}: {_reason(exc)}") from exc

    def put(self, data: bytes) -> str:
        """Store ``data`` under a new id, and return the id."""
        artifact_id = str(uuid.uuid4())  # an identity, not a sampled value: no seeded generator
        with self._errors("writing an artifact"):
            try:
                self._store.write(self._key(artifact_id), io.BytesIO(data))
            except FileNotFoundError:
                if self.folder is None:
                    raise
                self.folder.mkdir(parents=True, exist_ok=True)  # the first artifact of a new store
                self._store.write(self._key(artifact_id), io.BytesIO(data))
        return artifact_id

    def get(self, artifact_id: str) -> bytes:
        """The bytes stored under ``artifact_id``.

        Raises:
            ArtifactNotFoundError: The store has no such artifact.
            ArtifactStoreError: The store cannot be read.
        """
        with self._errors(f"reading artifact {artifact_id}"):
            reader = self._store.open_reader(self._key(artifact_id))
            try:
                return bytes(reader.read())
            finally:
                reader.close()

    def remove(self, artifact_id: str) -> None:
        """Remove an artifact; one that is not there is fine."""
        with contextlib.suppress(ArtifactNotFoundError), self._errors(f"removing artifact {artifact_id}"):
            self._store.remove(self._key(artifact_id))

    def check(self) -> None:
        """Write a probe, read it back and remove it: the store is reachable and writable.

        Nothing is left behind, whatever the outcome: a folder that does not exist is created for
        the probe and removed after it (the first :meth:`put` creates it again), so a submission
        that fails later (its database, say) leaves no trace either.

        Raises:
            ArtifactStoreError: ``artifact store URL is not writable: REASON`` (one line).
        """
        made: list[Path] = []
        try:
            if self.folder is not None:
                made = [p for p in (self.folder, *self.folder.parents) if not p.exists()]
                self.folder.mkdir(parents=True, exist_ok=True)
            probe = self.put(_PROBE)
            try:
                if self.get(probe) != _PROBE:
                    raise ArtifactStoreError("the probe read back differs from what was written")
            finally:
                self.remove(probe)
        except (ArtifactStoreError, OSError) as exc:
            reason = _reason(exc).removeprefix(f"artifact store {self.url}: ")
            raise ArtifactStoreError(
                f"artifact store {self.url} is not writable: {reason} ({SETTING})"
            ) from exc
        finally:
            for folder in made:  # deepest first; one a worker wrote into meanwhile stays
                with contextlib.suppress(OSError):
                    folder.rmdir()

    def close(self) -> None:
        """Close the store's client, if it has one (an S3 client's connections)."""
        client = getattr(self._store, "client", None)
        if client is not None and hasattr(client, "close"):
            client.close()


def _not_found(exc: Exception) -> bool:
    response = getattr(exc, "response", None)  # botocore.exceptions.ClientError
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return code in ("404", "NoSuchKey", "NotFound")


def _boto3_store(bucket: str, url: str) -> Any:
    """Optuna's ``Boto3ArtifactStore`` on ``bucket``, its client configured as boto3 reads its
    environment (``AWS_ENDPOINT_URL``, credentials, region), with bounded retries."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise ArtifactStoreError(
            f"{SETTING}: artifact store {url} needs boto3: pip install 'hpo-narrowing[s3]'"
        ) from None
    from optuna.artifacts import Boto3ArtifactStore

    config = Config(
        connect_timeout=10,
        read_timeout=60,
        retries={"max_attempts": 3, "mode": "standard"},
        region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
    )
    return Boto3ArtifactStore(bucket, client=boto3.client("s3", config=config))


_STORES: ProcessCache[str, Artifacts] = ProcessCache(close=Artifacts.close)


def open_store(url: str) -> Artifacts:
    """The store at ``url``, opened once per process.

    Raises:
        ArtifactStoreError: The URL is malformed, or boto3 is missing for an ``s3://`` store.
    """
    return _STORES.get_or_create(url, lambda: Artifacts(url))


def remove_artifacts(url: str | None, artifact_ids: Iterable[str]) -> tuple[list[str], str | None]:
    """Remove artifacts from the store at ``url``, going on past failures.

    Args:
        url: The store (None: a study made before models were kept, which has none).
        artifact_ids: The artifacts.

    Returns:
        ``(ids left, the first failure's reason or None)``.
    """
    ids = list(artifact_ids)
    if url is None or not ids:
        return [], None
    left: list[str] = []
    reason: str | None = None
    try:
        store = open_store(url)
    except ArtifactStoreError as exc:
        return ids, str(exc)
    for artifact_id in ids:
        try:
            store.remove(artifact_id)
        except ArtifactStoreError as exc:
            left.append(artifact_id)
            reason = reason or str(exc)
    return left, reason
