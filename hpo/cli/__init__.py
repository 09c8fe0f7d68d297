"""The ``hpo`` command line."""

from __future__ import annotations

__all__ = ["main"]


def main() -> None:
    """Entry point of the ``hpo`` console script and ``python -m hpo``."""
    # BLAS reads its thread count and kernel choice once, when NumPy is first imported: set them
    # before anything else is imported.
    from hpo._blas import configure_blas

    configure_blas()

    from ._app import run

    run()
