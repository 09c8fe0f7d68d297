"""Parameter names: which field of ``model`` or ``training`` a searched parameter sets."""

from __future__ import annotations

import difflib
import functools
import typing
from typing import Literal

from pydantic import BaseModel

from ._models import DatasetSpec, ModelSpec, TrainingSpec
from ._parameters import Loc, _fmt, _located

__all__ = ["MAX_DEPTH", "SECTIONS", "VIRTUAL", "field_kind", "resolve"]

SECTIONS: dict[str, type[BaseModel]] = {"model": ModelSpec, "training": TrainingSpec}
VIRTUAL = ("width", "depth")
"""Fields of ``model`` that exist only in a search: ``hidden_sizes = [width] * depth``."""
_NOT_SEARCHABLE = {
    ("training", "epochs"): "epochs cannot be searched: each stage sets its own (search.stages[].epochs)",
    (
        "model",
        "hidden_sizes",
    ): "hidden_sizes cannot be searched as a list: search model.width and model.depth",
}
_ALIASES = {
    "learning_rate": "lr",
    "learningrate": "lr",
    "lr_rate": "lr",
    "wd": "weight_decay",
    "l2": "weight_decay",
    "weight_decay_lambda": "weight_decay",
    "batch": "batch_size",
    "batchsize": "batch_size",
    "hidden_size": "width",
    "units": "width",
    "layers": "depth",
    "num_layers": "depth",
    "n_layers": "depth",
}
"""Names people use in other tools, for the suggestion of an unknown parameter name."""
MAX_DEPTH = next(
    (m.max_length for m in ModelSpec.model_fields["hidden_sizes"].metadata if hasattr(m, "max_length")), 64
)
"""Most hidden layers a model may have (``model.hidden_sizes``' own limit)."""


def field_kind(section: str, field: str) -> str:
    """``float``, ``int``, ``bool``, ``choice`` (a Literal) or ``other``."""
    if section == "model" and field in VIRTUAL:
        return "int"
    annotation = SECTIONS[section].model_fields[field].annotation
    if typing.get_origin(annotation) is Literal:
        return "choice"
    return {float: "float", int: "int", bool: "bool"}.get(annotation, "other")  # type: ignore[arg-type]


@functools.cache
def _valid_names() -> dict[str, tuple[str, str]]:
    """Every name a parameter may have (short and dotted) and its target."""
    fields = [(s, f) for s, cls in SECTIONS.items() for f in cls.model_fields] + [
        ("model", v) for v in VIRTUAL
    ]
    fields = [t for t in fields if t not in _NOT_SEARCHABLE]
    out = {f"{s}.{f}": (s, f) for s, f in fields}
    for s, f in fields:
        owners = [t for t in fields if t[1] == f]
        if len(owners) == 1:
            out[f] = (s, f)
    return out


def resolve(name: str, loc: Loc) -> tuple[str, str]:
    """The (section, field) a parameter name sets; a located error when there is none."""
    valid = _valid_names()
    if name in valid:
        return valid[name]
    section, _, field = name.rpartition(".")
    for (s, f), why in _NOT_SEARCHABLE.items():
        if field == f and section in ("", s):
            raise _located(loc, why, name)
    if (section in ("dataset", "") and field in DatasetSpec.model_fields) or name == "seed":
        raise _located(
            loc, f"{name} cannot be searched: the data split and the seed are shared by all trials", name
        )
    if not section and any(field in cls.model_fields for cls in SECTIONS.values()):
        owners = [s for s, cls in SECTIONS.items() if field in cls.model_fields]
        raise _located(loc, f"{name} is ambiguous: write {' or '.join(f'{s}.{field}' for s in owners)}", name)
    candidates = {**{k: k for k in valid}, **_ALIASES}
    key = name.lower()
    close = difflib.get_close_matches(key, list(candidates), n=1, cutoff=0.6)
    if section and field in valid:
        hint = f"; {field} is {'.'.join(valid[field])}"
    elif key in _ALIASES:
        hint = f"; did you mean {_ALIASES[key]!r}?"
    elif close:
        hint = f"; did you mean {candidates[close[0]]!r}?"
    else:
        hint = f"; valid names: {', '.join(sorted(k for k in valid if '.' not in k))}"
    raise _located(loc, f"unknown parameter {_fmt(name)}{hint}", name)
