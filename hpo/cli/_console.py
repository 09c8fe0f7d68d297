"""Consoles: data goes to stdout, diagnostics to stderr."""

from __future__ import annotations

from functools import cache

from rich.console import Console

__all__ = ["err_console", "out_console"]


@cache
def out_console() -> Console:
    """Console for data (stdout). Piped tables are not squeezed to 80 columns."""
    console = Console(soft_wrap=True)
    if not console.is_terminal:
        console = Console(soft_wrap=True, width=200)
    return console


@cache
def err_console() -> Console:
    """Console for progress, warnings and errors (stderr)."""
    return Console(stderr=True, soft_wrap=True)
