"""Reading a spec file: strict YAML, then pydantic, with one-line errors that point into the file."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

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


Overrides = dict[tuple[str | int, ...], str]
"""Fields set on the command line (``--set KEY=VALUE``): path -> how to name it in messages."""


def _overridden(loc: tuple[str | int, ...], overrides: Overrides) -> str | None:
    """The ``--set`` that gave the value at ``loc`` (or a value inside it), if one did."""
    for path, label in overrides.items():
        if loc[: len(path)] == path or (path[: len(loc)] == loc and loc):
            return label
    return None


def validation_message(
    exc: ValidationError, positions: Positions, source: str, overrides: Overrides | None = None
) -> SpecError:
    """The first pydantic error as a :class:`SpecError` naming the field and its line:column (or
    the ``--set`` option that gave its value)."""
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
    given = _overridden(loc, overrides or {})
    if given is not None:
        where, line, col = given, None, None
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
    overrides: Overrides = field(default_factory=dict)

    def error(self, name: str, message: str) -> SpecError:
        """A one-line :class:`SpecError` about field ``name`` (dotted, ``dataset.path``), at its
        position in the file, at the closest enclosing section the file has (a default value), or
        naming the ``--set`` that gave it."""
        loc: tuple[str | int, ...] = tuple(name.split("."))
        probe = loc
        while probe and probe not in self.positions:
            probe = probe[:-1]
        line, col = self.positions.get(probe, (None, None))
        where = f"{self.source}:{line}:{col}" if line else self.source
        given = _overridden(loc, self.overrides)
        if given is not None:
            where, line, col = given, None, None
        return SpecError(f"{where}: {name}: {message}", field=name, line=line, column=col)


def load_spec(path: str | Path, model: type[M]) -> M:
    """Read and validate a YAML spec file as ``model``; the path ``-`` reads standard input.

    Raises:
        SpecError: unreadable file, a file past the size limit, YAML error, or validation error (one
            line, with position).
    """
    return load_spec_file(path, model).spec


def load_spec_file(path: str | Path, model: type[M], overrides: Sequence[str] = ()) -> SpecFile[M]:
    """:func:`load_spec`, keeping the file's name and positions with the spec (see :class:`SpecFile`).

    Args:
        path: The file (``-``: standard input).
        model: The model to validate it as.
        overrides: ``KEY=VALUE`` settings from the command line (``--set search.trials=60``): each
            dotted KEY (list items by index: ``search.stages.0.trials``) is set to VALUE read as
            YAML, before validation, so an override is checked exactly like the file and is part
            of the spec that is stored.
    """
    source, raw = _read(path)
    data, positions = load_yaml(_decode(raw, source), source)
    if not isinstance(data, dict):
        raise SpecError(
            f"{source}:1:1: the file must be a mapping of sections, got {type(data).__name__}",
            line=1,
            column=1,
        )
    _resolve_dataset_path(data, None if source == "<stdin>" else Path(path).parent)
    applied = {}
    for text in overrides:
        key, value = _parse_override(text)
        _set_path(data, key, value, text)
        applied[key] = f"--set {shorten(text)}"
    try:
        return SpecFile(model.model_validate(data), source, positions, applied)
    except ValidationError as exc:
        raise validation_message(exc, positions, source, applied) from None


# A search set to a number of trials drops the file's stages, and the other way round: the two
# are alternatives, and `--set search.trials=60` means "60 trials, split as hpo splits them".
_ALTERNATIVES = {("search", "trials"): ("search", "stages"), ("search", "stages"): ("search", "trials")}


def _resolve_dataset_path(data: dict[str, Any], folder: Path | None) -> None:
    """A relative ``dataset.path`` means relative to the study file's folder (as docker compose
    reads paths in its file), whatever the working directory; ``~`` is the home folder. Read from
    standard input (or given with ``--set``), it is relative to the working directory.

    The stored spec holds the absolute path, so every process of the study reads the same data.
    """
    dataset = data.get("dataset")
    if not isinstance(dataset, dict) or not isinstance(dataset.get("path"), str) or not dataset["path"]:
        return
    given = Path(dataset["path"]).expanduser()
    base = (folder or Path.cwd()).resolve()
    dataset["path"] = str(given if given.is_absolute() else base / given)


def _parse_override(text: str) -> tuple[tuple[str | int, ...], Any]:
    """``KEY=VALUE`` as (path, value); VALUE is read as strict YAML (``60``, ``[50, 50]``, ``adam``)."""
    key, sep, value = text.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise _bad_set(text, "expected KEY=VALUE, e.g. --set search.trials=60")
    path = tuple(int(p) if p.isdigit() else p for p in parts)
    parsed, _ = load_yaml(value if value.strip() else "null", f"--set {shorten(key)}")
    return path, parsed


def _set_path(data: dict[str, Any], path: tuple[str | int, ...], value: Any, text: str) -> None:
    node: Any = data
    for i, part in enumerate(path[:-1]):
        child = node[part] if _has(node, part) else None
        if child is None:
            if isinstance(part, int) or not isinstance(node, dict):
                raise _bad_set(text, f"{dotted(path[: i + 1])} does not exist")
            child = node[part] = {}
        if not isinstance(child, dict | list):
            raise _bad_set(text, f"{dotted(path[: i + 1])} is not a section")
        node = child
    last = path[-1]
    if isinstance(node, list) != isinstance(last, int) or (isinstance(last, int) and not _has(node, last)):
        raise _bad_set(text, f"{dotted(path)} does not exist")
    node[last] = value
    other = _ALTERNATIVES.get(path[:2]) if len(path) == 2 else None
    if other is not None and isinstance(data.get("search"), dict):
        data["search"].pop(other[1], None)


def _bad_set(text: str, problem: str) -> SpecError:
    return SpecError(f"--set {shorten(text)}: {problem}", field="--set")


def _has(node: Any, part: str | int) -> bool:
    if isinstance(node, dict):
        return part in node
    return isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)


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
