"""Reading a spec file: strict YAML, then pydantic, with one-line errors that point into the file."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from .._errors import SpecError
from ._models import TrainSpec
from ._yaml import Positions, load_yaml

__all__ = ["load_spec", "load_train_spec", "validation_message"]

M = TypeVar("M", bound=BaseModel)


def _dotted(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validation_message(exc: ValidationError, positions: Positions, source: str) -> SpecError:
    """The first pydantic error as a :class:`SpecError` naming the field and its line:column."""
    err = exc.errors(include_url=False)[0]
    loc = tuple(p for p in err["loc"] if isinstance(p, str | int))
    # Tagged unions and function validators add their own names to the path; drop the parts
    # that are not keys in the file.
    while (
        loc and loc not in positions and len(loc) > 1 and loc[:-1] in positions and err["type"] != "missing"
    ):
        loc = loc[:-1]
    field = _dotted(loc)
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown field (check the spelling; `hpo schema` lists the fields)"
    elif err["type"] == "missing":
        msg = "field required"
    elif msg.startswith("Value error, "):
        msg = msg.removeprefix("Value error, ")
    # Point at the field itself, or at the closest enclosing mapping that exists in the file.
    probe = loc
    while probe and probe not in positions:
        probe = probe[:-1]
    line, col = positions.get(probe, (None, None))
    where = f"{source}:{line}:{col}" if line else source
    label = f"{field}: " if field else ""
    return SpecError(f"{where}: {label}{msg}", field=field, line=line, column=col)


def load_spec(path: str | Path, model: type[M]) -> M:
    """Read and validate a YAML spec file as ``model``.

    Raises:
        SpecError: unreadable file, YAML error, or validation error (one line, with position).
    """
    p = Path(path)
    source = str(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{source}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{source}: cannot read: {exc}") from None
    data, positions = load_yaml(text, source)
    if not isinstance(data, dict):
        raise SpecError(f"{source}:1:1: the file must be a mapping of sections, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_message(exc, positions, source) from None


def load_train_spec(path: str | Path) -> TrainSpec:
    """Read a file describing one network to train (dataset, model, training)."""
    return load_spec(path, TrainSpec)
