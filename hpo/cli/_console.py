"""Consoles: data goes to stdout, diagnostics to stderr."""

from __future__ import annotations

from functools import cache

from rich.console import Console

__all__ = ["err_console", "out_console"]


@cache
def out_console() -> Console:
    """Console for data (stdout)."""
    return Console(soft_wrap=True)


@cache
def err_console() -> Console:
    """Console for progress, warnings and errors (stderr)."""
    return Console(stderr=True, soft_wrap=True)
