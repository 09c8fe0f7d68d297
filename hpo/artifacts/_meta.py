"""How a trial's model is named in its Optuna trial, so that ``optuna-dashboard`` lists it."""

from __future__ import annotations

import json

__all__ = ["ARTIFACTS_ATTR_PREFIX", "MIMETYPE", "artifact_meta"]

ARTIFACTS_ATTR_PREFIX = "artifacts:"
"""The prefix of the system attributes ``optuna.artifacts`` reads (``optuna.artifacts._upload``)."""
MIMETYPE = "application/octet-stream"


def artifact_meta(artifact_id: str, filename: str) -> tuple[str, str]:
    """The Optuna trial system attribute that records an artifact: ``(key, JSON value)``.

    What ``optuna.artifacts.upload_artifact`` writes: the key ``"artifacts:" + id`` and the JSON
    of an ``optuna.artifacts.ArtifactMeta`` (``artifact_id``, ``filename``, ``mimetype``,
    ``encoding``), which ``optuna.artifacts.get_all_artifact_meta`` and ``optuna-dashboard`` read.

    Args:
        artifact_id: The artifact's id in the store.
        filename: The name a download is saved under.
    """
    meta = {"artifact_id": artifact_id, "filename": filename, "mimetype": MIMETYPE, "encoding": None}
    return ARTIFACTS_ATTR_PREFIX + artifact_id, json.dumps(meta)
