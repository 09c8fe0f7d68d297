"""Errors of artifact stores."""

from __future__ import annotations

from .._errors import HPOError

__all__ = ["SETTING", "ArtifactNotFoundError", "ArtifactStoreError"]

SETTING = "HPO_ARTIFACTS / --artifacts"
"""How a user chooses the store, named in every message about it."""


class ArtifactStoreError(HPOError):
    """An artifact store URL that is malformed, or a store that cannot be reached or written
    (bad input: the CLI exits 2). The message is one line naming :data:`SETTING`."""


class ArtifactNotFoundError(ArtifactStoreError):
    """An artifact id the store does not hold (removed, or the store was replaced)."""
