"""Spec files: strict YAML and validation, one line per error with the field and line:column."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpo import SpecError
from hpo.spec import TrainSpec, load_train_spec, load_yaml

GOOD = """\
name: ok
seed: 3
dataset:
  kind: digits
  subset: 500
model:
  hidden_sizes: [50, 50]
  activation: tanh
  weight_init: xavier
  weight_decay: 1e-5
training:
  optimizer: adam
  lr: 1e-3
  epochs: 4
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


def test_good_file(tmp_path: Path) -> None:
    spec = load_train_spec(_write(tmp_path, GOOD))
    assert isinstance(spec, TrainSpec)
    assert spec.training.lr == 1e-3  # YAML 1.1 would have read "1e-3" as a string
    assert spec.model.weight_decay == 1e-5
    assert spec.training.optimizer_options() == {"beta1": 0.9, "beta2": 0.999}


# (file text, expected start of the message after the file name)
BAD = [
    (
        "dataset: {kind: digits}\ntraining:\n  lerning_rate: 0.1\n",
        ":3:17: training.lerning_rate: unknown field",
    ),
    (
        "dataset: {kind: digits}\ndataset: {kind: mnist}\n",
        ":2:1: duplicate key 'dataset' (first given on line 1)",
    ),
    (
        "dataset: {kind: digits}\nmodel:\n  batchnorm: no\n",
        ":3:14: model.batchnorm: Input should be a valid boolean",
    ),
    (
        "dataset: {kind: digits}\ntraining: {lr: .nan}\n",
        ":2:16: training.lr: Input should be a finite number",
    ),
    (
        "dataset: {kind: digits}\ntraining: {lr: .inf}\n",
        ":2:16: training.lr: Input should be a finite number",
    ),
    ("dataset: {kind: digits}\ntraining: {lr: 0}\n", ":2:16: training.lr: Input should be greater than 0"),
    (
        "dataset: {kind: digits}\ntraining: {lr: '0.1'}\n",
        ":2:16: training.lr: Input should be a valid number",
    ),
    (
        "dataset: {kind: digits}\ntraining: {epochs: 2.5}\n",
        ":2:20: training.epochs: Input should be a valid integer",
    ),
    ("dataset: {kind: digits}\ntraining: {optimizer: lbfgs}\n", ":2:23: training.optimizer: Input should be"),
    (
        "dataset: {kind: digits}\nmodel: {hidden_sizes: [10, -1]}\n",
        ":2:28: model.hidden_sizes[1]: Input should be",
    ),
    ("dataset: {kind: digits}\nmodel: {dropout: 1.0}\n", ":2:18: model.dropout: Input should be less than 1"),
    ("dataset: {kind: mnist}\n", ":1:10: dataset: path is required with kind 'mnist'"),
    ("dataset: {kind: digits, path: x}\n", ":1:10: dataset: path is not used with kind 'digits'"),
    (
        "dataset: {kind: digits, val_fraction: 0.5, test_fraction: 0.5}\n",
        ":1:10: dataset: val_fraction + test",
    ),
    ("model: {}\n", ":1:1: dataset: field required"),
    ("dataset: {kind: digits}\nseed: -1\n", ":2:7: seed: Input should be greater than or equal to 0"),
    ("dataset: {kind: digits}\nname: 'has space'\n", ":2:7: name: String should match pattern"),
    ("dataset: [1, 2\n", ":2:1: YAML syntax error"),
    (
        "dataset: {kind: digits}\ntraining: !!python/name:os.system ''\n",
        ":2:11: YAML syntax error: could not determine",
    ),
    (
        "dataset: !!python/object:os.system {}\n",
        ":1:10: unsupported YAML tag 'tag:yaml.org,2002:python/object:os.system'",
    ),
    ("- 1\n- 2\n", ":1:1: the file must be a mapping of sections, got list"),
    ("", ": the file is empty"),
]


@pytest.mark.parametrize(("text", "expected"), BAD)
def test_bad_files_give_one_line_naming_the_field(tmp_path: Path, text: str, expected: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(SpecError) as info:
        load_train_spec(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}{expected}"), message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such file"):
        load_train_spec(tmp_path / "absent.yaml")


def test_yaml_positions_and_types() -> None:
    data, positions = load_yaml("a:\n  b: [1, 2e3]\n  c: off\n")
    assert data == {"a": {"b": [1, 2000.0], "c": "off"}}
    assert positions[("a", "b", 1)] == (2, 10)
    assert positions[("a", "c")] == (3, 6)
