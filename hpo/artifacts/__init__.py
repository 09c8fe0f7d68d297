"""Where trained networks are kept: Optuna's artifact stores, one per study, named by a URL.

A study's store is chosen at submission (:func:`resolve_store_url`: the ``HPO_ARTIFACTS`` setting
or ``--artifacts``, else a folder beside the SQLite file, else ``./hpo-artifacts``), checked
before anything is written (:meth:`Artifacts.check`), and stored on the study, so every worker and
the CLI use the same one. Importing this package imports neither Optuna nor boto3.

Example::

    from hpo.artifacts import open_store, resolve_store_url

    url = resolve_store_url("sqlite:///runs/hpo.db", None)  # file:///.../runs/hpo.db.artifacts
    store = open_store(url)
    store.check()
    artifact_id = store.put(checkpoint_bytes)
    assert store.get(artifact_id) == checkpoint_bytes
"""

from __future__ import annotations

from ._errors import ArtifactNotFoundError, ArtifactStoreError
from ._meta import ARTIFACTS_ATTR_PREFIX, artifact_meta
from ._store import Artifacts, open_store, remove_artifacts
from ._urls import DEFAULT_FOLDER, resolve_store_url, store_path

__all__ = [
    "ARTIFACTS_ATTR_PREFIX",
    "DEFAULT_FOLDER",
    "ArtifactNotFoundError",
    "ArtifactStoreError",
    "Artifacts",
    "artifact_meta",
    "open_store",
    "remove_artifacts",
    "resolve_store_url",
    "store_path",
]
