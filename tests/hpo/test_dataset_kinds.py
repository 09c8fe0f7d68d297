"""The dataset kinds and options a study file accepts are exactly those the engine provides.

``hpo.spec`` keeps its own table of kinds (it must not import NumPy); these tests fail when that
table and the engine's registry (``engine.datasets.KINDS``) drift apart, in their data and in what
each side accepts and refuses.
"""

from __future__ import annotations

import subprocess
import sys
import typing
from typing import Any

import pytest
from pydantic import ValidationError

import engine
from engine.datasets import KINDS, OPTION_DEFAULTS
from hpo.spec import DatasetSpec
from hpo.spec._models import DATASET_KIND_RULES, DATASET_OPTIONS, DatasetKindName

# A value other than the default for every option only some kinds read.
OPTION_SAMPLES: dict[str, Any] = {"label_column": 0}


def _spec(kind: str, **fields: Any) -> DatasetSpec:
    path = "data" if KINDS[kind].path is not None else None
    return DatasetSpec(kind=kind, path=path, **fields)  # type: ignore[arg-type]


def test_the_kinds_are_the_engines() -> None:
    assert typing.get_args(DatasetKindName) == engine.DATASET_KINDS
    assert typing.get_args(DatasetSpec.model_fields["kind"].annotation) == engine.DATASET_KINDS
    assert tuple(DATASET_KIND_RULES) == tuple(KINDS) == engine.DATASET_KINDS


@pytest.mark.parametrize("kind", engine.DATASET_KINDS)
def test_path_rules_agree(kind: str) -> None:
    assert DATASET_KIND_RULES[kind].path == KINDS[kind].path
    if KINDS[kind].path is None:
        with pytest.raises(ValidationError, match=f"path is not used with kind '{kind}'"):
            DatasetSpec(kind=kind, path="data")  # type: ignore[arg-type]
        with pytest.raises(engine.DatasetError, match=f"path is not used for kind '{kind}'"):
            engine.load_dataset(kind, path="data")
    else:
        with pytest.raises(ValidationError, match=f"path is required with kind '{kind}'"):
            DatasetSpec(kind=kind)  # type: ignore[arg-type]
        with pytest.raises(engine.DatasetError, match=f"path is required for kind '{kind}'"):
            engine.load_dataset(kind)


def test_the_options_are_the_engines() -> None:
    assert set(DATASET_OPTIONS) == set(OPTION_DEFAULTS) == set(OPTION_SAMPLES)
    for name, default in OPTION_DEFAULTS.items():
        assert DatasetSpec.model_fields[name].default == default
        assert OPTION_SAMPLES[name] != default


@pytest.mark.parametrize("option", sorted(OPTION_DEFAULTS))
@pytest.mark.parametrize("kind", engine.DATASET_KINDS)
def test_an_option_is_taken_by_the_same_kinds(kind: str, option: str) -> None:
    takes = option in KINDS[kind].options
    assert (option in DATASET_KIND_RULES[kind].options) == takes
    value = OPTION_SAMPLES[option]
    _spec(kind, **{option: OPTION_DEFAULTS[option]})  # the default: accepted with every kind
    if takes:
        assert getattr(_spec(kind, **{option: value}), option) == value
    else:
        with pytest.raises(ValidationError, match=f"{option}\n.*not used with kind '{kind}'"):
            _spec(kind, **{option: value})
        with pytest.raises(engine.DatasetError, match=f"{option} is not used for kind '{kind}'") as info:
            engine.load_dataset(kind, **{option: value})
        assert info.value.field == option


@pytest.mark.parametrize("kind", engine.DATASET_KINDS)
def test_a_stored_spec_with_the_default_options_loads_again(kind: str) -> None:
    # A study's stored spec carries every field, the options' defaults included.
    stored = _spec(kind).model_dump_json()
    assert '"label_column":-1' in stored
    assert DatasetSpec.model_validate_json(stored) == _spec(kind)


def test_the_spec_imports_without_numpy() -> None:
    code = "import sys, hpo.spec; assert 'numpy' not in sys.modules, sorted(sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
