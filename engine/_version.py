"""The engine's version, recorded in every checkpoint it writes."""

from __future__ import annotations

__all__ = ["__version__"]

# The project's version (pyproject.toml); the engine ships with it. Informational only: what a
# checkpoint reader accepts is decided by the checkpoint's format version, not by this.
__version__ = "0.1.0"
