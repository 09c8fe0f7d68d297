"""Study files (`hpo submit study.yaml`): every bad file gives one line naming the field and line:column;
good files fill their defaults, resolve their parameters, and hash the same however they are written."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from hpo import SpecError
from hpo.spec import (
    CategoricalParameter,
    StudySpec,
    TrainSpec,
    load_study_spec,
    load_yaml,
    study_json_schema,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
STUDY_EXAMPLES = [p for p in EXAMPLES if p.name != "train-digits.yaml"]
BAD_DIR = Path(__file__).with_name("bad_studies")
BAD_FILES = sorted(BAD_DIR.glob("*.yaml"))


def _expectation(path: Path) -> str:
    first = path.read_text(encoding="utf-8").split("\n", 1)[0]
    assert first.startswith("# expect: "), f"{path.name}: the first line must be '# expect: <message>'"
    return first.removeprefix("# expect: ")


def _write(tmp_path: Path, text: str, name: str = "study.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_there_are_enough_bad_files() -> None:
    assert len(BAD_FILES) >= 25


@pytest.mark.parametrize("path", BAD_FILES, ids=[p.stem for p in BAD_FILES])
def test_bad_study_gives_one_line_naming_the_field(path: Path) -> None:
    expected = _expectation(path)
    with pytest.raises(SpecError) as info:
        load_study_spec(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}{expected}"), message
    # The position in the message and on the exception agree; so does the field.
    m = re.match(r":(\d+):(\d+): (?:([\w.\[\]]+): )?", expected)
    if m:
        assert (info.value.line, info.value.column) == (int(m[1]), int(m[2]))
        if m[3] and "YAML" not in expected and "duplicate key" not in expected:
            assert info.value.field == m[3]
    else:
        assert expected.startswith(": ")


# --- good files ------------------------------------------------------------------------------

BASE = """\
name: s1
dataset: {kind: digits}
search:
  stages:
    - {trials: 4, epochs: 2}
  parameters:
    lr: {type: float, low: 1.0e-4, high: 1.0, log: true}
"""


@pytest.mark.parametrize("path", STUDY_EXAMPLES, ids=[p.stem for p in STUDY_EXAMPLES])
def test_examples_load(path: Path) -> None:
    spec = load_study_spec(path)
    assert isinstance(spec, StudySpec)
    assert spec.search.parameters
    assert spec.objective.direction == "maximize"


def test_example_stage_plans() -> None:
    plans = {}
    for path in STUDY_EXAMPLES:
        spec = load_study_spec(path)
        plans[spec.name] = [(s.trials, spec.stage_epochs(i)) for i, s in enumerate(spec.search.stages)]
        assert spec.total_trials == sum(t for t, _ in plans[spec.name])
    assert plans == {
        "digits-lr-wd": [(16, 10), (16, 15), (8, 20)],
        "digits-mixed": [(24, 8), (16, 12), (12, 16)],
        "mnist-book": [(40, 10), (30, 25), (30, 50)],
        "mnist-book-random": [(100, 50)],
        "smoke": [(80, 3), (60, 3), (60, 3)],
    }
    book = load_study_spec(ROOT / "examples" / "mnist-book.yaml")
    assert book.model.hidden_sizes == [100] * 6
    assert book.dataset.subset == 500
    assert book.search.parameters["lr"].bounds == [1e-8, 1.0]
    random = load_study_spec(ROOT / "examples" / "mnist-book-random.yaml")
    assert random.search.sampler == "random"
    assert random.search.narrowing is None


def test_train_example_is_still_a_train_file() -> None:
    from hpo.spec import load_train_spec

    assert load_train_spec(ROOT / "examples" / "train-digits.yaml").name == "train-digits"


def test_defaults_are_filled(tmp_path: Path) -> None:
    spec = load_study_spec(_write(tmp_path, BASE))
    assert spec.search.sampler == "narrowing"
    narrowing = spec.search.narrowing
    assert narrowing is not None
    assert (
        narrowing.top_fraction,
        narrowing.min_top,
        narrowing.margin,
        narrowing.min_width,
        narrowing.pan,
        narrowing.promote,
    ) == (
        0.25,
        3,
        0.15,
        0.1,
        True,
        0.0,
    )
    assert spec.search.in_flight is None
    assert (spec.objective.metric, spec.objective.reduce, spec.objective.direction) == (
        "val_acc",
        "final",
        "maximize",
    )
    assert (spec.limits.max_failed_trials, spec.limits.trial_time_limit, spec.limits.max_attempts) == (
        10,
        None,
        3,
    )
    assert (spec.pruner.kind, spec.pruner.warmup_epochs, spec.pruner.percentile) == ("none", 2, None)
    assert spec.checkpoints.every == 50
    assert spec.seed == 0
    assert spec.stage_epochs(0) == 2


def test_direction_follows_the_metric(tmp_path: Path) -> None:
    spec = load_study_spec(_write(tmp_path, BASE + "objective: {metric: val_loss, reduce: best}\n"))
    assert spec.objective.direction == "minimize"
    spec = load_study_spec(_write(tmp_path, BASE + "objective: {metric: val_loss, direction: minimize}\n"))
    assert spec.objective.direction == "minimize"


def test_yaml_traps(tmp_path: Path) -> None:
    # 1e3 is a float where a float is valid (YAML 1.1 would read a string); `no` stays a string.
    text = BASE.replace("low: 1.0e-4", "low: 1e-4") + "limits: {trial_time_limit: 1e3}\n"
    text = text.replace(
        "  parameters:\n", "  parameters:\n    loss: {type: categorical, choices: [cross_entropy]}\n"
    )
    spec = load_study_spec(_write(tmp_path, text))
    assert spec.limits.trial_time_limit == 1000.0
    assert spec.search.parameters["lr"].low == 1e-4
    data, _ = load_yaml("a: no\nb: 1e3\nc: true\n")
    assert data == {"a": "no", "b": 1000.0, "c": True}


def test_other_samplers_and_pruners(tmp_path: Path) -> None:
    text = BASE.replace("search:\n", "search:\n  sampler: tpe\n  in_flight: 4\n")
    text += "pruner: {kind: percentile, percentile: 25.0, warmup_epochs: 0}\n"
    spec = load_study_spec(_write(tmp_path, text))
    assert spec.search.sampler == "tpe"
    assert spec.search.in_flight == 4
    assert spec.search.narrowing is None
    assert spec.pruner.percentile == 25.0
    spec = load_study_spec(_write(tmp_path, BASE.replace("search:\n", "search:\n  sampler: cmaes\n")))
    assert spec.search.sampler == "cmaes"


SEARCH_ALL = """\
name: s2
seed: 7
dataset: {kind: digits}
model: {hidden_sizes: [32, 32], activation: relu}
training: {optimizer: momentum, epochs: 9}
search:
  stages:
    - {trials: 3, epochs: 2}
    - {trials: 2}
  parameters:
    lr: {type: float, low: 1.0e-3, high: 0.5, log: true, bounds: [1.0e-5, 1.0]}
    model.weight_decay: {type: float, low: 1.0e-8, high: 1.0e-2, log: true}
    momentum: {type: float, low: 0.5, high: 0.99}
    training.batch_size: {type: int, low: 16, high: 256, step: 16}
    activation: {type: categorical, choices: [relu, tanh]}
    batchnorm: {type: categorical, choices: [true, false]}
    model.width: {type: int, low: 8, high: 128, log: true}
    depth: {type: int, low: 0, high: 4}
"""


def test_parameter_targets(tmp_path: Path) -> None:
    spec = load_study_spec(_write(tmp_path, SEARCH_ALL))
    assert spec.parameter_targets() == {
        "lr": ("training", "lr"),
        "model.weight_decay": ("model", "weight_decay"),
        "momentum": ("training", "momentum"),
        "training.batch_size": ("training", "batch_size"),
        "activation": ("model", "activation"),
        "batchnorm": ("model", "batchnorm"),
        "model.width": ("model", "width"),
        "depth": ("model", "depth"),
    }
    assert isinstance(spec.search.parameters["activation"], CategoricalParameter)
    assert spec.total_trials == 5


def _params(**overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "lr": 0.05,
        "model.weight_decay": 1e-5,
        "momentum": 0.8,
        "training.batch_size": 64,
        "activation": "tanh",
        "batchnorm": True,
        "model.width": 48,
        "depth": 3,
    }
    params.update(overrides)
    return params


def test_trial_spec_applies_params_and_stage_epochs(tmp_path: Path) -> None:
    spec = load_study_spec(_write(tmp_path, SEARCH_ALL))
    trial = spec.trial_spec(_params(), 0, seed=123)
    assert isinstance(trial, TrainSpec)
    assert trial.name == "s2"
    assert trial.seed == 123
    assert trial.dataset == spec.dataset
    assert trial.training.lr == 0.05
    assert trial.training.momentum == 0.8
    assert trial.training.batch_size == 64
    assert trial.training.optimizer == "momentum"
    assert trial.training.epochs == 2  # stage 0's own epochs
    assert trial.model.weight_decay == 1e-5
    assert trial.model.activation == "tanh"
    assert trial.model.batchnorm is True
    assert trial.model.hidden_sizes == [48, 48, 48]
    later = spec.trial_spec(_params(depth=0), 1)
    assert later.training.epochs == 9  # stage 1 has no epochs: training.epochs
    assert later.seed == 7  # the study's seed when none is given
    assert later.model.hidden_sizes == []
    # NumPy scalars from a sampler are plain values.
    np = pytest.importorskip("numpy")
    assert spec.trial_spec(_params(depth=np.int64(2), lr=np.float64(0.2)), 0).model.hidden_sizes == [48, 48]
    # Past the first range but within bounds (narrowing may pan there).
    assert spec.trial_spec(_params(lr=0.9), 1).training.lr == 0.9
    # The study itself is unchanged.
    assert spec.model.hidden_sizes == [32, 32]
    assert spec.training.epochs == 9


def test_width_or_depth_alone_uses_the_current_layers(tmp_path: Path) -> None:
    text = BASE.replace("name: s1\n", "name: s1\nmodel: {hidden_sizes: [20, 20, 20]}\n")
    width = load_study_spec(_write(tmp_path, text + "    width: {type: int, low: 4, high: 64}\n"))
    assert width.trial_spec({"lr": 0.1, "width": 10}, 0, seed=0).model.hidden_sizes == [10, 10, 10]
    depth = load_study_spec(_write(tmp_path, text + "    model.depth: {type: int, low: 1, high: 5}\n"))
    assert depth.trial_spec({"lr": 0.1, "model.depth": 5}, 0, seed=0).model.hidden_sizes == [20] * 5


@pytest.mark.parametrize(
    ("params", "stage", "message"),
    [
        (_params(lr=0.0), 0, "training.lr: Input should be greater than 0"),
        (_params(momentum=1.0), 0, "training.momentum: Input should be less than 1"),
        (_params(activation="gelu"), 0, "activation='gelu' is not one of ['relu', 'tanh']"),
        (_params(batchnorm=1), 0, "batchnorm=1 is not one of [true, false]"),
        (_params(**{"training.batch_size": 64.0}), 0, "training.batch_size: Input should be a valid integer"),
        (_params(depth=65), 0, "depth 65 is not in 0..64"),
        ({"lr": 0.1}, 0, "missing ["),
        (_params(dropout=0.1), 0, "unknown ['dropout']"),
        (_params(), 2, "stage 2 is not in 0..1"),
    ],
)
def test_trial_spec_rejects_bad_params(
    tmp_path: Path, params: dict[str, Any], stage: int, message: str
) -> None:
    spec = load_study_spec(_write(tmp_path, SEARCH_ALL))
    with pytest.raises(SpecError) as info:
        spec.trial_spec(params, stage, seed=0)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


# --- the stored form -------------------------------------------------------------------------

REWRITTEN = """\
# the same study as BASE, written differently: block style, other key order, explicit defaults
search:
  parameters:
    lr:
      log: true
      high: 1
      low: 0.0001
      type: float
  sampler: narrowing
  stages:
    - trials: 4
      epochs: 2
dataset:
  kind: digits
  val_fraction: 0.2
name: s1
objective: {metric: val_acc, direction: maximize}
"""


def test_canonical_json_is_stable(tmp_path: Path) -> None:
    a = load_study_spec(_write(tmp_path, BASE, "a.yaml"))
    b = load_study_spec(_write(tmp_path, REWRITTEN, "b.yaml"))
    assert a.canonical_json() == b.canonical_json()
    assert a.spec_hash() == b.spec_hash()
    assert re.fullmatch(r"[0-9a-f]{64}", a.spec_hash())
    data = json.loads(a.canonical_json())
    assert list(data) == sorted(data)
    assert data["search"]["narrowing"]["top_fraction"] == 0.25  # defaults filled
    assert data["objective"]["direction"] == "maximize"
    again = StudySpec.from_json(a.canonical_json())
    assert again == a
    assert again.canonical_json() == a.canonical_json()


@pytest.mark.parametrize("path", STUDY_EXAMPLES, ids=[p.stem for p in STUDY_EXAMPLES])
def test_examples_round_trip_through_json(path: Path) -> None:
    spec = load_study_spec(path)
    assert StudySpec.from_json(spec.canonical_json()).spec_hash() == spec.spec_hash()


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("name: s1", "name: s2"),
        ("name: s1", "name: s1\nseed: 1"),
        ("{kind: digits}", "{kind: digits, subset: 500}"),
        ("{trials: 4, epochs: 2}", "{trials: 5, epochs: 2}"),
        ("{trials: 4, epochs: 2}", "{trials: 4, epochs: 3}"),
        ("{trials: 4, epochs: 2}", "{trials: 4}"),
        ("high: 1.0,", "high: 0.5,"),
        ("log: true}", "log: true, bounds: [1.0e-5, 1.0]}"),
        ("stages:", "sampler: random\n  stages:"),
        ("stages:", "narrowing: {margin: 0.2}\n  stages:"),
    ],
)
def test_hash_changes_with_the_study(tmp_path: Path, old: str, new: str) -> None:
    base = load_study_spec(_write(tmp_path, BASE, "a.yaml"))
    assert old in BASE
    changed = load_study_spec(_write(tmp_path, BASE.replace(old, new, 1), "b.yaml"))
    assert changed.spec_hash() != base.spec_hash()


@pytest.mark.parametrize(
    "extra",
    [
        "model: {dropout: 0.1}\n",
        "training: {optimizer: adam}\n",
        "objective: {reduce: best}\n",
        "limits: {max_attempts: 2}\n",
        "pruner: {kind: median}\n",
        "checkpoints: {every: 10}\n",
    ],
)
def test_hash_changes_with_any_section(tmp_path: Path, extra: str) -> None:
    base = load_study_spec(_write(tmp_path, BASE, "a.yaml"))
    changed = load_study_spec(_write(tmp_path, BASE + extra, "b.yaml"))
    assert changed.spec_hash() != base.spec_hash()


# --- the JSON schema -------------------------------------------------------------------------


def test_json_schema_shape() -> None:
    schema = study_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "hpo study"
    assert set(schema["required"]) == {"name", "dataset", "search"}
    assert schema["additionalProperties"] is False
    for name, prop in schema["properties"].items():
        assert prop.get("description"), name
    defs = schema["$defs"]
    for model in ("SearchSpec", "StageSpec", "NarrowingSpec", "FloatParameter", "IntParameter",
                  "CategoricalParameter", "ObjectiveSpec", "LimitsSpec", "PrunerSpec",
                  "CheckpointsSpec"):  # fmt: skip
        for name, prop in defs[model]["properties"].items():
            assert prop.get("description"), f"{model}.{name}"
    json.dumps(schema)  # serializable as is


def _schema_validator() -> Any:
    jsonschema = pytest.importorskip("jsonschema")
    schema = study_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("path", STUDY_EXAMPLES, ids=[p.stem for p in STUDY_EXAMPLES])
def test_json_schema_accepts_the_examples(path: Path) -> None:
    validator = _schema_validator()
    data, _ = load_yaml(path.read_text(encoding="utf-8"), str(path))
    errors = [e.message for e in validator.iter_errors(data)]
    assert errors == []


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("lr: {type: float", "lr: {type: floaty"),
        ("{trials: 4, epochs: 2}", "{trials: 4, epochs: 2, lerning_rate: 1}"),
        ("name: s1", "name: -s1"),
        ("{trials: 4, epochs: 2}", "{trials: 0}"),
        ("  stages:\n    - {trials: 4, epochs: 2}\n", ""),  # neither stages nor trials
    ],
)
def test_json_schema_rejects_bad_studies(old: str, new: str) -> None:
    validator = _schema_validator()
    data, _ = load_yaml(BASE.replace(old, new))
    assert not validator.is_valid(data)


@pytest.mark.parametrize(
    ("sampler", "trials", "stages"),
    [
        ("narrowing", 100, [25, 25, 25, 25]),
        ("narrowing", 10, [3, 3, 2, 2]),
        ("narrowing", 2, [1, 1]),
        ("random", 100, [100]),
        ("tpe", 7, [7]),
    ],
)
def test_search_trials_split_into_the_default_stages(sampler: str, trials: int, stages: list[int]) -> None:
    text = BASE.replace(
        "  stages:\n    - {trials: 4, epochs: 2}\n", f"  sampler: {sampler}\n  trials: {trials}\n"
    )
    data, _ = load_yaml(text)
    assert _schema_validator().is_valid(data)
    spec = StudySpec.model_validate(data)
    assert [st.trials for st in spec.search.stages] == stages
    assert all(st.epochs is None for st in spec.search.stages)  # training.epochs each
    again = StudySpec.model_validate(json.loads(spec.canonical_json()))  # a dump has both; they agree
    assert again == spec


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("checkpoints: {every: -1}\n", "checkpoints.every"),
        ("checkpoints: {every: 2.5}\n", "checkpoints.every"),
        ("checkpoints: {keep: last}\n", "checkpoints.keep"),
        ("checkpoints: 10\n", "checkpoints"),
    ],
)
def test_bad_checkpoints_section_points_at_its_line(tmp_path: Path, section: str, message: str) -> None:
    path = _write(tmp_path, BASE + section, "a.yaml")
    line = (BASE + section).count("\n")  # the section is the file's last line
    with pytest.raises(SpecError, match=rf":{line}:\d+: {message}"):
        load_study_spec(path)


def test_checkpoints_every_zero_turns_mid_run_checkpoints_off(tmp_path: Path) -> None:
    spec = load_study_spec(_write(tmp_path, BASE + "checkpoints: {every: 0}\n", "a.yaml"))
    assert spec.checkpoints.every == 0
