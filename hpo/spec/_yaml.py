"""A strict, bounded YAML reader that remembers where every value came from.

PyYAML's defaults hide mistakes in study files: a duplicate key silently keeps the last value,
``no``/``off``/``yes`` become booleans and ``010`` is 8, ``1:30`` is 90, ``1_0`` is 10 (YAML 1.1),
``2024-01-01`` becomes a date, and ``1e3`` stays a string because YAML 1.1 floats need a dot. This
reader rejects duplicate keys, accepts only ``true``/``false`` as booleans (YAML 1.2), reads
``1e3`` as a float, refuses the YAML 1.1 number forms (octal, binary, hexadecimal, base 60, digit
separators) with a message saying how YAML 1.1 would have read them, keeps dates as strings,
constructs only plain data (no Python tags), and returns the line and column of every mapping
key and value so that validation errors can point at them.

A study file is input, in size and shape too: the document's length, nesting depth, alias uses
and values after alias expansion are bounded (``MAX_*`` below), so that a hostile or broken file
(5000 nested ``[``, a "billion laughs" alias bomb, ``&a [*a]``) is one error line in well under a
second rather than a ``RecursionError`` or gigabytes of memory. Every value or key that a message
echoes goes through :func:`shorten`, so a message stays one line of bounded length.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.events import AliasEvent, CollectionStartEvent, Event
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.reader import ReaderError

from .._errors import SpecError

__all__ = [
    "ECHO_LIMIT",
    "MAX_ALIASES",
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_NODES",
    "Position",
    "Positions",
    "dotted",
    "load_yaml",
    "shorten",
]

Position = tuple[int, int]
"""1-based (line, column)."""
Positions = dict[tuple[str | int, ...], Position]
"""Where each value (by its path of keys and list indices) starts in the file."""

MAX_BYTES = 256 * 1024
"""Longest study file, in bytes. Real ones are 1-3 kB; the largest the models allow (64 parameters
of 100 choices each) is some tens of kB. PyYAML is pure Python and scans about 1-3 MB/s, so any
document of this size is read in a fraction of a second."""
MAX_DEPTH = 32
"""Deepest nesting of lists and mappings. A study file needs 5 (``search.parameters.lr.bounds``);
32 keeps PyYAML's recursive composer (three Python frames per level) and our own builder far from
Python's recursion limit of 1000."""
MAX_ALIASES = 100
"""Most alias uses (``*name``) in one document: a study file needs a few at most (a parameter block
reused); each use may copy a whole subtree, which :data:`MAX_NODES` bounds in turn."""
MAX_NODES = 10_000
"""Most values (scalars, lists and mappings, keys included) in a document once aliases are
expanded. The largest study the models allow (64 parameters of 100 choices) has about 6800;
composing 10 000 nodes takes PyYAML about 0.2 s, so a file full of tiny values is refused quickly,
and a "billion laughs" alias bomb is refused after 10 000 copied values instead of 9**9."""
ECHO_LIMIT = 60
"""Characters of a value or key that an error message echoes (the rest becomes ``...``)."""

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_COLLECTION_TAGS = frozenset({"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"})

_BOOL_FORMS = r"true|True|TRUE|false|False|FALSE"
# What a scalar resolved (or tagged) as a number or boolean may look like: YAML 1.2's core schema.
# PyYAML still resolves YAML 1.1's other forms (010, 0x1F, 0b10, 1:30, 1_0, 1_000.5) as numbers;
# they are refused in `_Builder._scalar` rather than read as strings, so that the message can say
# what YAML 1.1 would have made of them.
_PLAIN = {
    _INT: re.compile(r"[-+]?(?:0|[1-9][0-9]*)"),
    _FLOAT: re.compile(
        r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)"
    ),
    _BOOL: re.compile(_BOOL_FORMS),
}


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans, exponent-only floats, no timestamps, and bounded composing.

    PyYAML's composer recurses once per nesting level and keeps every anchored node to hand out for
    each alias; this one counts levels, nodes and alias uses as it goes, and refuses an alias to a
    collection that is still being composed (``&a [*a]``, a graph with a cycle).
    """

    def __init__(self, stream: str, source: str) -> None:
        super().__init__(stream)
        self.source = source
        self._depth = 0
        self._nodes = 0
        self._aliases = 0
        self._open: set[str] = set()

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        event = self.peek_event()
        if isinstance(event, AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _error(self.source, event, f"more than {MAX_ALIASES} alias uses (*name)")
            if event.anchor in self._open:
                raise _error(
                    self.source,
                    event,
                    f"recursive alias *{shorten(event.anchor)}: it refers to a list or mapping that "
                    "contains it",
                )
            return _Alias(super().compose_node(parent, index), event)
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise _error(self.source, event, f"more than {MAX_NODES} values in the file")
        if not isinstance(event, CollectionStartEvent):
            return super().compose_node(parent, index)
        if self._depth >= MAX_DEPTH:
            raise _error(self.source, event, f"lists and mappings nested deeper than {MAX_DEPTH} levels")
        anchor = event.anchor
        self._depth += 1
        if anchor is not None:
            self._open.add(anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1
            if anchor is not None:
                self._open.discard(anchor)


# Replace YAML 1.1's boolean resolver (yes/no/on/off) with YAML 1.2's true/false, and drop the
# timestamp resolver (YAML 1.2's core schema has no dates: `name: 2024-01-01` is a string).
_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL, _TIMESTAMP)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_StrictLoader.add_implicit_resolver(_BOOL, re.compile(f"^(?:{_BOOL_FORMS})$"), list("tTfF"))
# YAML 1.2 floats such as 1e3, 1E-4, -2e+5 (YAML 1.1 requires a dot).
_StrictLoader.add_implicit_resolver(
    _FLOAT, re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def shorten(text: str, limit: int | None = ECHO_LIMIT) -> str:
    """``text`` fit for a one-line message: control and other unprintable characters escaped
    (``\\n``, ``\\x00``), and cut to ``limit`` characters with ``...`` (None: escape only)."""
    cut = text if limit is None else text[: limit + 1]
    shown = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in cut)
    if limit is not None and (len(shown) > limit or len(text) > len(cut)):
        return shown[:limit] + "..."
    return shown


def dotted(path: tuple[str | int, ...], limit: int = 2 * ECHO_LIMIT) -> str:
    """A path of keys and indices as a field name, ``search.stages[0].trials``, for messages.

    Each key is shortened, and a path longer than ``limit`` loses its first parts to ``...``: the
    last key is the one a message is about.
    """
    parts = [f"[{p}]" if isinstance(p, int) else f".{shorten(str(p))}" for p in path]
    text = "".join(parts).removeprefix(".")
    while len(text) > limit and len(parts) > 1:
        parts.pop(0)
        text = "..." + "".join(parts).removeprefix(".")
    return text


def _pos(node: Node) -> Position:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _error(source: str, at: Node | Event, message: str, field: str = "") -> SpecError:
    line, col = at.start_mark.line + 1, at.start_mark.column + 1
    return SpecError(f"{source}:{line}:{col}: {message}", field=field, line=line, column=col)


def _position_of(text: str, offset: int) -> Position:
    """The 1-based (line, column) of character ``offset`` in ``text``."""
    line_start = text.rfind("\n", 0, offset) + 1
    return text.count("\n", 0, offset) + 1, offset - line_start + 1


def load_yaml(text: str, source: str = "<string>") -> tuple[Any, Positions]:
    """Parse one YAML document strictly, within the limits ``MAX_BYTES``, ``MAX_DEPTH``,
    ``MAX_ALIASES`` and ``MAX_NODES``.

    Args:
        text: The document.
        source: Name used in error messages (usually the file path).

    Returns:
        The data (dicts, lists, scalars) and the position of every value in it.

    Raises:
        SpecError: Syntax errors, duplicate keys, non-scalar keys, unsupported tags, YAML 1.1 number
            forms, an empty or multi-document file, a document past a limit; the message is one
            line and starts with ``source:line:column`` where there is one.
    """
    if len(text) > MAX_BYTES:  # characters: a text within the limit in bytes is within it here
        line, col = _position_of(text, MAX_BYTES)
        raise SpecError(
            f"{source}:{line}:{col}: the document is longer than {MAX_BYTES} characters",
            line=line,
            column=col,
        )
    try:
        loader = _StrictLoader(text, source)  # the reader checks every character here
    except ReaderError as exc:
        line, col = _position_of(text, exc.position)
        raise SpecError(
            f"{source}:{line}:{col}: YAML syntax error: character {chr(exc.character)!r} "
            f"(#x{exc.character:04x}) is not allowed in YAML",
            line=line,
            column=col,
        ) from None
    try:
        root = loader.get_single_node()
        if root is None:
            raise SpecError(f"{source}: the file is empty")
        builder = _Builder(loader, source)
        return builder.build(root, ()), builder.positions
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc, source) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{source}: YAML error: {shorten(str(exc), 3 * ECHO_LIMIT)}") from None
    finally:
        loader.dispose()


def _syntax_error(exc: yaml.MarkedYAMLError, source: str) -> SpecError:
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
    where = f"{source}:{line}:{col}" if mark else source
    problem = str(exc.problem or exc.context or "invalid YAML")
    if exc.problem and exc.context and exc.context.startswith("found ") and exc.context_mark:
        # "found duplicate anchor 'a'; first occurrence" (context) and "second occurrence" (problem)
        problem = f"{exc.context} on line {exc.context_mark.line + 1}, {exc.problem} here"
    problem = shorten(problem, 3 * ECHO_LIMIT)
    return SpecError(f"{where}: YAML syntax error: {problem}", line=line, column=col)


class _Alias(Node):
    """A use of an alias (``*name``): the node it names, and where the alias is written.

    PyYAML's composer hands out the anchored node itself for each alias; wrapping it keeps the
    alias's own position, for messages about the value that the alias stands for.
    """

    def __init__(self, target: Node, event: AliasEvent) -> None:
        super().__init__(target.tag, target.value, event.start_mark, event.end_mark)
        self.target = target
        self.anchor: str = event.anchor


class _Builder:
    """Plain data from the composed node graph, with positions; aliases are expanded within
    :data:`MAX_NODES` values and :data:`MAX_DEPTH` levels."""

    def __init__(self, loader: _StrictLoader, source: str) -> None:
        self.loader = loader
        self.source = source
        self.positions: Positions = {}
        self.nodes = 0
        self.expanding: _Alias | None = None
        """The outermost alias being expanded: a limit reached inside it is reported there."""

    def _limit(self, node: Node, problem: str) -> SpecError:
        if self.expanding is None:
            return _error(self.source, node, problem)
        return _error(
            self.source, self.expanding, f"{problem} once *{shorten(self.expanding.anchor)} is expanded"
        )

    def _count(self, node: Node) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise self._limit(node, f"more than {MAX_NODES} values")

    def build(self, node: Node, path: tuple[str | int, ...]) -> Any:
        if isinstance(node, _Alias):
            outer = self.expanding
            self.expanding = outer or node
            try:
                value = self.build(node.target, path)
            finally:
                self.expanding = outer
            self.positions[path] = _pos(node)  # the value is where the alias is written
            return value
        self._count(node)
        self.positions[path] = _pos(node)
        if isinstance(node, ScalarNode):
            return self._scalar(node, path)
        if node.tag not in _COLLECTION_TAGS:
            # Scalars go through SafeLoader's constructors, which refuse unknown tags; collections are
            # built here, so their tags are checked here.
            raise _error(self.source, node, f"unsupported YAML tag {shorten(node.tag)!r}")
        if len(path) >= MAX_DEPTH:  # only through aliases: the composer bounds the file's own nesting
            raise self._limit(node, f"lists and mappings nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        assert isinstance(node, MappingNode)
        return self._mapping(node, path)

    def _mapping(self, node: MappingNode, path: tuple[str | int, ...]) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            self._count(key_node)
            target = key_node.target if isinstance(key_node, _Alias) else key_node
            if not isinstance(target, ScalarNode):
                raise _error(self.source, key_node, "mapping keys must be plain scalars")
            key = self._scalar(target, path, "key ")
            if isinstance(key, bool) or key is None or not isinstance(key, str | int | float):
                key = str(target.value)
            if key in out:
                first = self.positions.get((*path, key), (0, 0))[0]
                field = dotted((*path, key))
                raise _error(
                    self.source, key_node, f"duplicate key '{field}' (first given on line {first})", field
                )
            out[key] = self.build(value_node, (*path, key))
        return out

    def _scalar(self, node: ScalarNode, path: tuple[str | int, ...], what: str = "") -> Any:
        if node.tag == _TIMESTAMP:
            raise _error(self.source, node, f"unsupported YAML tag {node.tag!r}")
        plain = _PLAIN.get(node.tag)
        if plain is not None and not plain.fullmatch(node.value):
            raise self._field_error(node, path, f"{what}{_misread(self.loader, node)}")
        try:
            return self.loader.construct_object(node, deep=True)
        except ValueError:
            if node.tag != _INT:
                raise
            # A plain decimal integer past Python's 4300 digits (sys.get_int_max_str_digits()).
            raise self._field_error(node, path, f"{what}{shorten(node.value)} has too many digits") from None

    def _field_error(self, node: Node, path: tuple[str | int, ...], message: str) -> SpecError:
        field = dotted(path)
        return _error(self.source, node, f"{field}: {message}" if field else message, field)


def _misread(loader: _StrictLoader, node: ScalarNode) -> str:
    """Why a scalar resolved or tagged as a number or boolean is refused, and what to write instead."""
    shown = shorten(node.value)
    if node.tag == _BOOL:
        return f"{shown} is not a boolean: write true or false"
    digits = node.value.lstrip("+-").replace("_", "")
    if ":" in digits:
        form = "sexagesimal, base 60"
    elif digits[:2] in ("0b", "0x"):
        form = "binary" if digits[1] == "b" else "hexadecimal"
    elif node.tag == _INT and digits[:1] == "0" and len(digits) > 1:
        form = "octal"
    elif "_" in node.value:
        form = "digit separators"
    else:
        form = ""
    advice = "write a plain decimal number, or quote it for a string"
    if form and len(node.value) <= ECHO_LIMIT:
        try:  # short, so the number read is small enough to show
            read = loader.construct_object(node)
        except ValueError:  # 0x_, 0b_: YAML 1.1's pattern, but no digits
            return f"{shown} is not a number: {advice}"
        return f"{shown} is read as {read!r} by YAML 1.1 ({form}); {advice}"
    if form:
        return f"{shown} is a YAML 1.1 number ({form}); {advice}"
    return f"{shown} is not a plain decimal number: {advice}"
