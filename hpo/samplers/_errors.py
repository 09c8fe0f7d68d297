"""Errors of the samplers package."""

from __future__ import annotations

from hpo._errors import HPOError

__all__ = ["NarrowingError", "SamplerError"]


class SamplerError(HPOError):
    """A sampler cannot be built as asked (unknown name, missing optional dependency)."""


class NarrowingError(SamplerError):
    """A narrowing rule, search space, trial list or bound is invalid. The message names the culprit."""
