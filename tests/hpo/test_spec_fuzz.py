"""Fuzzing the study loader: whatever a file holds (random text or bytes, YAML-ish token soups, alias
ladders, random structures, a valid study with one value replaced), loading it gives a
:class:`StudySpec` or a :class:`SpecError` whose message is one line of bounded length, and nothing
else; every example stays within a time and a memory budget.

Examples are derandomized and no example database is kept, so a run in CI is the same every time;
``HPO_HYPOTHESIS_EXAMPLES=5000`` runs more of them.
"""

from __future__ import annotations

import copy
import os
import re
import tracemalloc
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpo import SpecError
from hpo.spec import StudySpec, load_study_spec, load_yaml

EXAMPLES = int(os.environ.get("HPO_HYPOTHESIS_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=timedelta(seconds=2),  # examples take milliseconds; an unbounded parse takes minutes
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MESSAGE_LIMIT = 500
"""Most characters of a message after the file name (field, position and echoed values included)."""
MEMORY_LIMIT = 64 * 2**20
"""Most bytes that loading one example may allocate at its peak (PyYAML is pure Python: tracemalloc
sees its allocations). A file within the limits needs a few MB; an alias bomb needs gigabytes."""

VALID = """\
name: fuzz
seed: 7
dataset: {kind: digits, subset: 500, val_fraction: 0.2, test_fraction: 0.2}
model:
  hidden_sizes: [32, 32]
  activation: relu
  dropout: 0.0
training: {optimizer: momentum, lr: 0.01, epochs: 9, batch_size: 50}
search:
  sampler: narrowing
  stages:
    - {trials: 3, epochs: 2}
    - {trials: 2}
  parameters:
    lr: {type: float, low: 1.0e-3, high: 0.5, log: true, bounds: [1.0e-5, 1.0]}
    training.batch_size: {type: int, low: 16, high: 256, step: 16}
    activation: {type: categorical, choices: [relu, tanh]}
    depth: {type: int, low: 0, high: 4}
    width: {type: int, low: 8, high: 64}
  narrowing: {top_fraction: 0.25, min_top: 3}
objective: {metric: val_acc, reduce: best}
limits: {max_failed_trials: 3, trial_time_limit: 60.0, max_attempts: 2}
pruner: {kind: median, warmup_epochs: 1}
"""
VALID_DATA: dict[str, Any] = load_yaml(VALID)[0]

NUMBER_FORMS = ["010", "-010", "0x1F", "0b10", "1:30", "1:30.0", "1_0", "1_000.5", "0x_", "0b_", "0_"]
TOKENS = [
    *["[", "]", "{", "}", ",", ": ", ":", "- ", "-", "? ", "'", '"', "|", ">", "#", "\\", "\\n", "%"],
    *["\n", "\n", "  ", "    ", "\t", "\r\n", "---\n", "...\n", "%YAML 1.1\n"],
    *["&a ", "&b ", "*a", "*b", "*c", "<<: "],
    *["!!int ", "!!float ", "!!bool ", "!!str ", "!!timestamp ", "!!binary ", "!!set ", "!!omap ", "!x "],
    "!!python/object/apply:os.system ",
    *NUMBER_FORMS,
    *["0", "1", "-1", "1.5", ".5", "1e3", "1e999", ".inf", "-.inf", ".nan", "1" * 5000],
    *["yes", "no", "true", "False", "null", "~", "2024-01-01", "2001-12-14t21:59:43.10-05:00"],
    *["name", "dataset", "kind", "digits", "search", "stages", "trials", "parameters", "lr", "type"],
    *["float", "low", "high", "choices", "x", "é", "\x00", "\x07", "\u2028", "\ufeff", "\ud7ff", "😀"],
]


def _paths(data: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a value in ``data`` (the root too)."""
    yield path
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        yield from _paths(value, (*path, key))


PATHS = list(_paths(VALID_DATA))[1:]
VALUE_SPANS = [m.span() for m in re.finditer(r"(?<=: )[^,{}\[\]\n]+", VALID)]
"""Where the valid study's text writes a scalar value (``7`` in ``seed: 7``, ``2`` in ``{trials: 2}``)."""


def _scalars() -> st.SearchStrategy[Any]:
    return (
        st.none()
        | st.booleans()
        | st.integers()
        | st.integers(min_value=-(10**30), max_value=10**30)
        | st.floats()
        | st.text(max_size=20)
        | st.text(st.characters(codec="ascii"), max_size=200)
        | st.sampled_from([*NUMBER_FORMS, "relu", "digits", "float", "int", "categorical"])
    )


def _structures() -> st.SearchStrategy[Any]:
    keys = st.text(max_size=10) | st.integers() | st.sampled_from([*sorted(VALID_DATA), "type", "low"])
    return st.recursive(
        _scalars(),
        lambda inner: st.lists(inner, max_size=6) | st.dictionaries(keys, inner, max_size=6),
        max_leaves=40,
    )


def _dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


@st.composite
def _mutated_studies(draw: st.DrawFn) -> str:
    """The valid study with one value (anywhere, of any kind) replaced by a random structure."""
    study = copy.deepcopy(VALID_DATA)
    *parents, last = draw(st.sampled_from(PATHS))
    target = study
    for key in parents:
        target = target[key]
    target[last] = draw(_structures())
    return _dump(study)


@st.composite
def _retyped_studies(draw: st.DrawFn) -> str:
    """The valid study's text with one written value replaced by raw YAML: a YAML 1.1 number form, a
    token or a token soup, unquoted."""
    start, end = draw(st.sampled_from(VALUE_SPANS))
    raw = draw(st.sampled_from(TOKENS) | st.lists(st.sampled_from(TOKENS), max_size=8).map("".join))
    return VALID[:start] + raw + VALID[end:]


@st.composite
def _alias_ladders(draw: st.DrawFn) -> str:
    """Anchors each listing aliases of the last few anchors, under one key of the valid study: a
    "billion laughs" when deep and wide; at times with an alias to itself or to a later anchor."""
    levels = draw(st.integers(1, 12))
    broken = draw(st.sampled_from([None, None, None, "self", "later"]))
    lines = ["x:"]
    for level in range(levels):
        refs = draw(st.lists(st.integers(max(0, level - 2), level), min_size=2, max_size=12))
        items = [f"*a{n}" if n < level else "leaf" for n in refs]
        if broken and level == levels - 1:
            items.append(f"*a{level}" if broken == "self" else f"*a{level + 1}")
        lines.append(f"  a{level}: &a{level} [{', '.join(items)}]")
    return VALID + "\n".join(lines) + "\n"


_SOUPS = st.lists(st.sampled_from(TOKENS), max_size=120).map("".join)
_TEXTS = st.text(max_size=300) | st.text(st.characters(codec="ascii"), max_size=300)


@pytest.fixture(scope="module")
def study_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one file every example is written to."""
    return tmp_path_factory.mktemp("fuzz") / "study.yaml"


def _load_traced(path: Path) -> tuple[StudySpec | SpecError, int]:
    """The outcome of loading ``path``, and the peak of memory allocated meanwhile.

    Memory is traced only here: tracing Hypothesis's own work as well would make it many times slower.
    """
    tracemalloc.start()
    try:
        return load_study_spec(path), tracemalloc.get_traced_memory()[1]
    except SpecError as exc:
        return exc, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _check(path: Path, content: str | bytes) -> StudySpec | SpecError:
    """Load ``content`` from ``path``: a spec, or a one-line bounded error, within the memory budget."""
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", errors="surrogatepass")
    outcome, peak = _load_traced(path)
    assert peak < MEMORY_LIMIT, f"{peak / 2**20:.0f} MiB"
    if isinstance(outcome, SpecError):
        message = str(outcome)
        assert message.startswith(str(path)), message
        assert len(message.splitlines()) == 1 and message.isprintable(), repr(message[:1000])
        assert len(message) - len(str(path)) <= MESSAGE_LIMIT, message
        assert len(outcome.field) <= MESSAGE_LIMIT
    else:
        assert isinstance(outcome, StudySpec)
    return outcome


def test_the_valid_study_is_valid(study_file: Path) -> None:
    # The mutations start from a study that loads: what they break, they break.
    assert isinstance(_check(study_file, VALID), StudySpec)


@settings(FUZZ, max_examples=3 * EXAMPLES)  # the broadest search, and the quickest examples
@given(content=_TEXTS | st.binary(max_size=300) | _SOUPS)
def test_random_texts_and_token_soups(study_file: Path, content: str | bytes) -> None:
    _check(study_file, content)


@FUZZ
@given(content=_structures().map(_dump))
def test_random_structures(study_file: Path, content: str) -> None:
    _check(study_file, content)


@FUZZ
@given(content=_mutated_studies() | _retyped_studies())
def test_a_valid_study_with_one_value_replaced(study_file: Path, content: str) -> None:
    _check(study_file, content)


@settings(FUZZ, max_examples=max(EXAMPLES // 3, 1))  # most expand to the limit: slower examples
@given(content=_alias_ladders())
def test_alias_ladders(study_file: Path, content: str) -> None:
    _check(study_file, content)
