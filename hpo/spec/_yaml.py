"""A strict YAML reader that remembers where every value came from.

PyYAML's defaults hide mistakes in study files: a duplicate key silently keeps the last value,
``no``/``off``/``yes`` become booleans (YAML 1.1), and ``1e3`` stays a string because YAML 1.1
floats need a dot. This reader rejects duplicate keys, accepts only ``true``/``false`` as
booleans (YAML 1.2), reads ``1e3`` as a float, constructs only plain data (no Python tags), and
returns the line and column of every mapping key and value so that validation errors can point
at them.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .._errors import SpecError

__all__ = ["Position", "Positions", "load_yaml"]

Position = tuple[int, int]
"""1-based (line, column)."""
Positions = dict[tuple[str | int, ...], Position]
"""Where each value (by its path of keys and list indices) starts in the file."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans and exponent-only floats."""


# Replace YAML 1.1's boolean resolver (yes/no/on/off) with YAML 1.2's true/false.
_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
# YAML 1.2 floats such as 1e3, 1E-4, -2e+5 (YAML 1.1 requires a dot).
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


_COLLECTION_TAGS = frozenset({"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"})


def _pos(node: Node) -> Position:
    return node.start_mark.line + 1, node.start_mark.column + 1


def load_yaml(text: str, source: str = "<string>") -> tuple[Any, Positions]:
    """Parse one YAML document strictly.

    Args:
        text: The document.
        source: Name used in error messages (usually the file path).

    Returns:
        The data (dicts, lists, scalars) and the position of every value in it.

    Raises:
        SpecError: Syntax errors, duplicate keys, non-scalar keys, unsupported tags, an empty or
            multi-document file; the message starts with ``source:line:column``.
    """
    loader = _StrictLoader(text)
    positions: Positions = {}
    try:
        root = loader.get_single_node()
        if root is None:
            raise SpecError(f"{source}: the file is empty")
        return _build(loader, root, (), positions, source), positions
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        where = f"{source}:{line}:{col}" if mark else source
        problem = exc.problem or exc.context or "invalid YAML"
        raise SpecError(f"{where}: YAML syntax error: {problem}", line=line, column=col) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{source}: YAML error: {exc}") from None
    finally:
        loader.dispose()


def _build(
    loader: yaml.SafeLoader, node: Node, path: tuple[str | int, ...], positions: Positions, source: str
) -> Any:
    positions[path] = _pos(node)
    if isinstance(node, MappingNode | SequenceNode) and node.tag not in _COLLECTION_TAGS:
        # Scalars go through SafeLoader's constructors, which refuse unknown tags; collections are
        # built here, so their tags are checked here.
        line, col = _pos(node)
        raise SpecError(f"{source}:{line}:{col}: unsupported YAML tag {node.tag!r}", line=line, column=col)
    if isinstance(node, MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                line, col = _pos(key_node)
                raise SpecError(
                    f"{source}:{line}:{col}: mapping keys must be plain scalars", line=line, column=col
                )
            key = loader.construct_object(key_node)
            if isinstance(key, bool) or key is None or not isinstance(key, str | int | float):
                key = str(key_node.value)
            if key in out:
                line, col = _pos(key_node)
                first = positions.get((*path, key), (0, 0))[0]
                dotted = ".".join(str(p) for p in (*path, key))
                raise SpecError(
                    f"{source}:{line}:{col}: duplicate key '{dotted}' (first given on line {first})",
                    field=dotted,
                    line=line,
                    column=col,
                )
            out[key] = _build(loader, value_node, (*path, key), positions, source)
        return out
    if isinstance(node, SequenceNode):
        return [_build(loader, item, (*path, i), positions, source) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)
