"""Artifact store URLs: ``file:///DIR`` (a plain path too) or ``s3://BUCKET[/PREFIX]``."""

from __future__ import annotations

import re
from pathlib import Path

from ._errors import SETTING, ArtifactStoreError

__all__ = ["DEFAULT_FOLDER", "parse_store_url", "resolve_store_url", "store_path"]

DEFAULT_FOLDER = "hpo-artifacts"
"""The store of a study in a database other than a SQLite file: this folder of the submitter's
working directory (made absolute at submission)."""
FORMS = "a folder (file:///DIR or a path) or s3://BUCKET/PREFIX"


def _bad(url: str, problem: str) -> ArtifactStoreError:
    return ArtifactStoreError(f"{SETTING}: artifact store {url!r}: {problem}; use {FORMS}")


def resolve_store_url(database_url: str, artifacts: str | None) -> str:
    """The URL of the artifact store of a study submitted to ``database_url``.

    ``artifacts`` (the ``HPO_ARTIFACTS`` setting or ``--artifacts``) wins: a path or ``file://``
    URL is a folder (``optuna.artifacts.FileSystemArtifactStore``), ``s3://BUCKET/PREFIX`` an
    S3-compatible bucket (``Boto3ArtifactStore``; its endpoint is boto3's: ``AWS_ENDPOINT_URL``).
    Without it: ``sqlite:///DIR/hpo.db`` keeps them in ``DIR/hpo.db.artifacts``, any other
    database in ``./hpo-artifacts``. Folders are made absolute, against the working directory.

    Returns:
        ``file:///ABSOLUTE/DIR`` or ``s3://BUCKET[/PREFIX]`` (nothing is opened or created).

    Raises:
        ArtifactStoreError: ``artifacts`` is not one of these forms.
    """
    if artifacts is not None and artifacts.strip():
        kind, where = parse_store_url(artifacts.strip())
        return "file://" + where if kind == "file" else "s3://" + where
    match = re.fullmatch(r"sqlite(?:\+pysqlite)?:///(?P<file>[^?]+)(?:\?(?P<query>.*))?", database_url)
    if match and not re.search(r"(^|&)uri=", match["query"] or ""):
        return "file://" + str(Path(match["file"] + ".artifacts").absolute())
    return "file://" + str(Path(DEFAULT_FOLDER).absolute())


def parse_store_url(url: str) -> tuple[str, str]:
    """``("file", absolute folder)`` or ``("s3", "BUCKET[/PREFIX]")`` of a store URL or path.

    Raises:
        ArtifactStoreError: Not one of the accepted forms.
    """
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.\-]*)://", url)
    if scheme is None:
        if re.match(r"(?i)(s3|file|gs|https?):", url):
            raise _bad(url, "a URL needs '//' after its scheme")  # "s3:bucket" is no folder name
        return "file", str(Path(url).expanduser().absolute())
    name, rest = scheme[1].lower(), url[scheme.end() :]
    if name == "file":
        host, slash, path = rest.partition("/")
        if host not in ("", "localhost") or not slash:
            raise _bad(url, "a file URL names no host: file:///ABSOLUTE/DIR")
        return "file", str(Path("/" + path).absolute())
    if name == "s3":
        bucket, _, prefix = rest.partition("/")
        if not re.fullmatch(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]", bucket):
            raise _bad(url, f"{bucket!r} is not an S3 bucket name")
        prefix = prefix.strip("/")
        return "s3", f"{bucket}/{prefix}" if prefix else bucket
    raise _bad(url, f"{name}:// stores are not supported")


def store_path(url: str) -> Path | None:
    """The folder of a ``file://`` store (what ``optuna-dashboard --artifact-dir`` takes), or None."""
    kind, where = parse_store_url(url)
    return Path(where) if kind == "file" else None
