"""Reading a spec file: strict YAML, then pydantic, with one-line errors that point into the file."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from pydantic import BaseModel, ValidationError

from .._errors import SpecError
from ._models import TrainSpec
from ._yaml import ECHO_LIMIT, MAX_BYTES, Positions, dotted, load_yaml, shorten

__all__ = ["STDIN", "SpecFile", "load_spec", "load_spec_file", "load_train_spec", "validation_message"]

M = TypeVar("M", bound=BaseModel)

STDIN = "-"
"""The path that stands for standard input (``hpo validate -``). A file named ``-`` needs a longer
path, such as ``$PWD/-``: ``Path("./-")`` is ``Path("-")``."""


def _file_loc(loc: tuple[str | int, ...], positions: Positions, missing: bool) -> tuple[str | int, ...]:
    """The part of a pydantic error location that names keys in the file.

    Tagged unions and function validators add their own names to the path (``lr.float.high``);
    a part that is not a key of its enclosing mapping in the file is dropped when it is followed by
    more path, and trailing such parts are dropped unless the error is a missing field.
    """
    out: tuple[str | int, ...] = ()
    for i, part in enumerate(loc):
        if i < len(loc) - 1 and out in positions and (*out, part) not in positions:
            continue
        out = (*out, part)
    while not missing and out and out not in positions and len(out) > 1 and out[:-1] in positions:
        out = out[:-1]
    return out


def _kind(value: object) -> str:
    return {dict: "a mapping", list: "a list", type(None): "null"}.get(
        type(value), f"a {type(value).__name__}"
    )


def validation_message(exc: ValidationError, positions: Positions, source: str) -> SpecError:
    """The first pydantic error as a :class:`SpecError` naming the field and its line:column."""
    err = exc.errors(include_url=False)[0]
    loc = _file_loc(
        tuple(p for p in err["loc"] if isinstance(p, str | int)), positions, err["type"] == "missing"
    )
    msg = err["msg"]
    ctx = err.get("ctx") or {}
    if err["type"] == "extra_forbidden":
        msg = "unknown field (check the spelling; `hpo schema` lists the fields)"
    elif err["type"] == "missing":
        msg = "field required"
    elif err["type"] in ("model_type", "model_attributes_type", "dict_type"):
        msg = f"expected a mapping (key: value), got {_kind(err.get('input'))}"
    elif err["type"] == "union_tag_invalid":
        loc = (*loc, str(ctx.get("discriminator", "type")).strip("'"))
        msg = f"{shorten(str(ctx.get('tag')))!r} is not one of {ctx.get('expected_tags')}"
    elif err["type"] == "union_tag_not_found":
        loc = (*loc, str(ctx.get("discriminator", "type")).strip("'"))
        msg = "field required"
    elif msg.startswith("Value error, "):
        msg = msg.removeprefix("Value error, ")
    # Our own messages shorten what they echo; this bounds any other message the same way.
    msg = shorten(msg, 8 * ECHO_LIMIT)
    field = dotted(loc)
    # Point at the field itself, or at the closest enclosing mapping that exists in the file.
    probe = loc
    while probe and probe not in positions:
        probe = probe[:-1]
    line, col = positions.get(probe, (None, None))
    where = f"{source}:{line}:{col}" if line else source
    label = f"{field}: " if field else ""
    return SpecError(f"{where}: {label}{msg}", field=field, line=line, column=col)


@dataclass(frozen=True)
class SpecFile(Generic[M]):
    """A validated spec with where it came from, so that later checks (its data, its memory) can
    point into the file as validation does.

    Attributes:
        spec: The validated model.
        source: The file's name in messages (``<stdin>`` for ``-``).
        positions: Line and column of every value in the file.
    """

    spec: M
    source: str
    positions: Positions

    def error(self, field: str, message: str) -> SpecError:
        """A one-line :class:`SpecError` about ``field`` (dotted, ``dataset.path``), at its position
        in the file, or at the closest enclosing section the file has (a default value)."""
        probe: tuple[str | int, ...] = tuple(field.split("."))
        while probe and probe not in self.positions:
            probe = probe[:-1]
        line, col = self.positions.get(probe, (None, None))
        where = f"{self.source}:{line}:{col}" if line else self.source
        return SpecError(f"{where}: {field}: {message}", field=field, line=line, column=col)


def load_spec(path: str | Path, model: type[M]) -> M:
    """Read and validate a YAML spec file as ``model``; the path ``-`` reads standard input.

    Raises:
        SpecError: unreadable file, a file past the size limit, YAML error, or validation error (one
            line, with position).
    """
    return load_spec_file(path, model).spec


def load_spec_file(path: str | Path, model: type[M]) -> SpecFile[M]:
    """:func:`load_spec`, keeping the file's name and positions with the spec (see :class:`SpecFile`)."""
    source, raw = _read(path)
    data, positions = load_yaml(_decode(raw, source), source)
    if not isinstance(data, dict):
        raise SpecError(
            f"{source}:1:1: the file must be a mapping of sections, got {type(data).__name__}",
            line=1,
            column=1,
        )
    try:
        return SpecFile(model.model_validate(data), source, positions)
    except ValidationError as exc:
        raise validation_message(exc, positions, source) from None


def _read(path: str | Path) -> tuple[str, bytes]:
    """The name for messages and the first ``MAX_BYTES + 1`` bytes of the file (or of standard input):
    enough to tell that a file is too long without reading all of a huge file or a device."""
    if str(path) == STDIN:
        source = "<stdin>"
        stream = getattr(sys.stdin, "buffer", None)
        if stream is None:
            raise SpecError(f"{source}: cannot read: there is no standard input")
        try:
            return source, stream.read(MAX_BYTES + 1)
        except (OSError, ValueError) as exc:  # ValueError: standard input is closed
            raise SpecError(f"{source}: cannot read: {shorten(str(exc))}") from None
    source = shorten(str(path), None)
    try:
        with open(path, "rb") as file:
            return source, file.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise SpecError(f"{source}: no such file") from None
    except OSError as exc:
        raise SpecError(f"{source}: cannot read: {shorten(exc.strerror or str(exc))}") from None


def _decode(data: bytes, source: str) -> str:
    """The text of a file read by :func:`_read`: within ``MAX_BYTES``, and UTF-8.

    The position of a file that is too long is where it reaches the limit.
    """
    if len(data) > MAX_BYTES:
        line, col = _byte_position(data, MAX_BYTES)
        raise SpecError(
            f"{source}:{line}:{col}: the file is longer than {MAX_BYTES // 1024} KiB, the most a study "
            "file may have",
            line=line,
            column=col,
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = _byte_position(data, exc.start)
        raise SpecError(
            f"{source}:{line}:{col}: not UTF-8 text (byte 0x{data[exc.start]:02x})", line=line, column=col
        ) from None


def _byte_position(data: bytes, offset: int) -> tuple[int, int]:
    """The 1-based (line, column in characters) of byte ``offset``, as YAML's own positions count."""
    start = data.rfind(b"\n", 0, offset) + 1
    column = len(data[start:offset].decode("utf-8", errors="replace")) + 1
    return data.count(b"\n", 0, offset) + 1, column


def load_train_spec(path: str | Path) -> TrainSpec:
    """Read a file describing one network to train (dataset, model, training)."""
    return load_spec(path, TrainSpec)
