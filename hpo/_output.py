"""Writing what a command produces: a file (``hpo plot --output``, ``hpo export --output``)
checked before any work is done, and written through a temporary file in the same directory,
renamed over the target at the end, so that a crash or an error never leaves half a file under the
user's name; and output streamed in blocks (:class:`TextSink`, :func:`json_array`), so that a
listing of 100k trials never holds its whole text.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from ._errors import SpecError

__all__ = ["TextSink", "atomic_output", "json_array", "output_format"]

SINK_BLOCK = 1 << 16
"""Characters a :class:`TextSink` gathers before it passes them on."""


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


class TextSink:
    """A text stream that passes what is written on in blocks of ~64 KiB (``csv.writer`` and the
    JSON chunks of :func:`json_array` write small pieces; a block is one write to the file or
    stdout).

    Args:
        write: Where the blocks go (e.g. ``lambda t: file.write(t.encode())``, ``typer.echo``).
        block: Characters gathered before a block is passed on.
    """

    def __init__(self, write: Callable[[str], object], block: int = SINK_BLOCK) -> None:
        self._write = write
        self._block = block
        self._parts: list[str] = []
        self._size = 0

    def write(self, text: str) -> int:
        """Gather ``text``; pass the gathered text on once it reaches a block."""
        self._parts.append(text)
        self._size += len(text)
        if self._size >= self._block:
            self.flush()
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        """Write each of ``lines``."""
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        """Pass on what is gathered."""
        if self._parts:
            text = "".join(self._parts)
            self._parts, self._size = [], 0
            self._write(text)


def json_array(items: Iterable[Any], *, indent: int, level: int = 0, **dumps: Any) -> Iterator[str]:
    """The text of ``json.dumps(list(items), indent=indent, **dumps)``, item by item, for an array
    nested ``level`` deep in an indented document (its first line not indented: the caller wrote
    what comes before it).

    The same text as ``json.dumps`` of the whole list (a test holds them equal): an item's lines
    are indented by the item's depth, which is safe because JSON text has no raw newline inside a
    string.
    """
    inner = "\n" + " " * (indent * (level + 1))
    empty = True
    yield "["
    for item in items:
        yield ("" if empty else ",") + inner + json.dumps(item, indent=indent, **dumps).replace("\n", inner)
        empty = False
    yield "]" if empty else "\n" + " " * (indent * level) + "]"
