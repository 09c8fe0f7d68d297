"""Writing a file a command produces (``hpo plot --output``): checked before any work is done,
and written through a temporary file in the same directory, renamed over the target at the end,
so that a crash or an error never leaves half a file under the user's name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from ._errors import SpecError

__all__ = ["atomic_output", "output_format"]


def output_format(path: Path, option: str = "--output") -> str:
    """The file format ``path`` asks for by its extension (``png`` without one).

    Raises:
        SpecError: matplotlib cannot write that format.
    """
    from matplotlib.backend_bases import FigureCanvasBase

    ext = path.suffix.lower().removeprefix(".")
    if not ext:
        return "png"
    if ext not in FigureCanvasBase.get_supported_filetypes():
        raise SpecError(f"{option}: cannot draw a '.{ext}' file: use .png, .svg or .pdf", field=option)
    return ext


@contextlib.contextmanager
def atomic_output(path: Path, option: str = "--output") -> Iterator[IO[bytes]]:
    """A temporary file next to ``path``, renamed over it when the block ends without error.

    The temporary file is created on entry, so a directory that is missing or not writable is
    found before any work is done; on an error (or a crash) ``path`` is left as it was.

    Raises:
        SpecError: ``path`` is a directory, or its directory is missing or not writable.
    """
    parent = path.parent
    if path.is_dir():
        raise SpecError(f"{option}: {path} is a directory", field=option)
    if not parent.exists():
        raise SpecError(f"{option}: directory {parent} does not exist", field=option)
    if not parent.is_dir():
        raise SpecError(f"{option}: {parent} is not a directory", field=option)
    try:
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise SpecError(f"{option}: cannot write in {parent}: {exc.strerror}", field=option) from None
    try:
        with os.fdopen(fd, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as an ordinary new file, not mkstemp's 0600
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
