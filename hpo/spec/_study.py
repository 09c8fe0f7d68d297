"""The study file of ``hpo submit``: what to train, what to search, and how to score and stop.

A study file is a :class:`~hpo.spec.TrainSpec` (``dataset``, ``model``, ``training``: the network
every trial starts from) plus five sections whose names follow Optuna, W&B sweeps and Katib:

- ``search``: the sampler, the stages (trial count and epoch budget of each) and the parameters,
  each a float or int range or a list of choices, aimed at a field of ``model`` or ``training``;
- ``objective``: the validation metric, how a trial's curve is reduced to one value, the direction;
- ``limits``: failed trials, a trial's time, and deliveries of one trial before it counts as failed;
- ``pruner``: optional early stopping of trials that fall behind;
- ``checkpoints``: how often a running trial saves a checkpoint to resume from (its final network
  is always kept).

Every check that needs more than one section (a parameter's name must resolve to a field, its range
must lie within that field's own limits, ...) runs in :class:`StudySpec`'s validator and reports the
offending key, so :func:`~hpo.spec.load_spec` can point at its line and column.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError, model_validator

from .._errors import SpecError
from ..search import SearchStrategy, get_strategy
from . import _search
from ._load import SpecFile, load_spec, load_spec_file
from ._models import DatasetSpec, ModelSpec, TrainingSpec, TrainSpec, _Strict
from ._names import MAX_DEPTH, SECTIONS, VIRTUAL, field_kind, resolve
from ._parameters import CategoricalParameter, FloatParameter, IntParameter, Loc, _fmt, _located
from ._sections import CheckpointsSpec, LimitsSpec, ObjectiveSpec, PrunerSpec, SearchSpec, SyntheticSpec
from ._yaml import ECHO_LIMIT, shorten

__all__ = ["StudySpec", "load_study_file", "load_study_spec", "study_json_schema"]


class StudySpec(_Strict):
    """A study: the network every trial starts from, what to search, how to score and when to stop."""

    name: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")] = (
        Field(description="Unique name of the study (letters, digits, '_', '.', '-'; at most 128).")
    )
    seed: Annotated[int, Field(ge=0)] = Field(
        0,
        description="Seed of the study: every trial's parameters and weights derive from it and the "
        "trial number.",
    )
    dataset: DatasetSpec = Field(description="The data and its split, shared by every trial.")
    model: ModelSpec = Field(default_factory=ModelSpec, description="The network every trial starts from.")
    training: TrainingSpec = Field(
        default_factory=TrainingSpec, description="How every trial trains, before its parameters are applied."
    )
    search: SearchSpec = Field(description="The sampler, the stages and the searched parameters.")
    objective: ObjectiveSpec = Field(default_factory=ObjectiveSpec, description="What a trial is scored by.")
    limits: LimitsSpec = Field(
        default_factory=LimitsSpec, description="Failed trials, a trial's time, deliveries of one trial."
    )
    pruner: PrunerSpec = Field(
        default_factory=PrunerSpec, description="Early stopping of trials (default none)."
    )
    checkpoints: CheckpointsSpec = Field(
        default_factory=CheckpointsSpec,
        description="Mid-run checkpoints a retried trial resumes from (every trial's final network is "
        "always kept).",
    )
    synthetic: SyntheticSpec | None = Field(
        None,
        description="Trials that sleep instead of training, scored by a fixed function of their "
        "parameters: for checking and benchmarking a deployment (null: real training).",
    )

    @model_validator(mode="after")
    def _parameters_fit_fields(self) -> StudySpec:
        targets: dict[tuple[str, str], str] = {}
        for name, param in self.search.parameters.items():
            loc: Loc = ("search", "parameters", name)
            target = resolve(name, loc)
            if target in targets:
                raise _located(
                    loc, f"sets {'.'.join(target)}, which {targets[target]!r} already searches", name
                )
            targets[target] = name
            self._check_parameter(loc, target, param)
        searched = {field for section, field in targets if section == "model"}
        self._check_width_depth(searched, targets)
        return self

    def _check_parameter(self, loc: Loc, target: tuple[str, str], param: Any) -> None:
        section, field = target
        where = ".".join(target)
        kind = field_kind(section, field)
        if isinstance(param, FloatParameter | IntParameter):
            if kind in ("bool", "choice"):
                raise _located(
                    (*loc, "type"), f"{where} takes one of fixed values; use type: categorical", param.type
                )
            if isinstance(param, FloatParameter) and kind == "int":
                raise _located((*loc, "type"), f"{where} is an integer field; use type: int", param.type)
            values: list[tuple[Loc, Any]] = [((*loc, *key), value) for key, value in param.endpoints()]
        else:
            values = [((*loc, "choices", i), choice) for i, choice in enumerate(param.choices)]
        for value_loc, value in values:
            problem = self._field_problem(section, field, value)
            if problem:
                raise _located(value_loc, f"{_fmt(value)} is not a valid {where}: {problem}", value)

    def _field_problem(self, section: str, field: str, value: Any) -> str | None:
        """Why ``value`` is invalid for the field (None when it is valid)."""
        if section == "model" and field in VIRTUAL:
            # Each on its own: a width as one layer, a depth of one-unit layers.
            if not isinstance(value, int) or isinstance(value, bool):
                return "Input should be a valid integer"
            if field == "depth" and not 0 <= value <= MAX_DEPTH:
                return f"the depth must be in 0..{MAX_DEPTH} (model.hidden_sizes' limit)"
            sizes = [value] if field == "width" else [1] * value
            data = {**self.model.model_dump(), "hidden_sizes": sizes}
        else:
            base = self.model if section == "model" else self.training
            data = {**base.model_dump(), field: value}
        try:
            SECTIONS[section].model_validate(data)
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            return str(err["msg"]).removeprefix("Value error, ")
        return None

    def _check_width_depth(self, searched: set[str], targets: dict[tuple[str, str], str]) -> None:
        hidden = self.model.hidden_sizes
        if "width" in searched and "depth" not in searched and not hidden:
            name = targets[("model", "width")]
            raise _located(
                ("search", "parameters", name),
                "model.width needs model.depth searched too, or a non-empty model.hidden_sizes for the depth",
                name,
            )
        if "depth" in searched and "width" not in searched and len(set(hidden)) != 1:
            name = targets[("model", "depth")]
            raise _located(
                ("search", "parameters", name),
                "model.depth needs model.width searched too, or a model.hidden_sizes of layers of one "
                f"width (got {shorten(str(hidden))})",
                name,
            )

    # --- helpers for the rest of hpo ---------------------------------------------------------

    @property
    def total_trials(self) -> int:
        """Trials over all stages."""
        return sum(stage.trials for stage in self.search.stages)

    def stage_epochs(self, stage: int) -> int:
        """Epochs of each trial in ``stage`` (0-based): the stage's own, else ``training.epochs``."""
        epochs = self.search.stages[stage].epochs
        return epochs if epochs is not None else self.training.epochs

    def first_number(self, stage: int) -> int:
        """The number of the first trial of ``stage`` (numbers run on across stages)."""
        return sum(s.trials for s in self.search.stages[:stage])

    @property
    def strategy(self) -> SearchStrategy:
        """How ``search.sampler`` proposes trials (:mod:`hpo.search`)."""
        return get_strategy(self.search.sampler)

    def in_flight_limit(self) -> int:
        """How many trials of a sequential sampler may exist unfinished at once: a pure function of
        the spec, so every process that tops a stage up applies the same limit."""
        return self.search.in_flight or _search.DEFAULT_IN_FLIGHT

    def search_space(self) -> dict[str, Any]:
        """The first stage's space as Optuna distributions."""
        return _search.search_space(self)

    def hard_bounds(self) -> dict[str, tuple[float | None, float | None]]:
        """The limits no narrowed window may cross (see :func:`hpo.spec._search.hard_bounds`)."""
        return _search.hard_bounds(self)

    def narrowing_rule(self) -> Any:
        """The study's :class:`~hpo.samplers.NarrowingRule` (defaults where the file is silent)."""
        return _search.narrowing_rule(self)

    def trial_seed(self, number: int) -> int:
        """The training seed of trial ``number``: a pure function of the study seed and the number."""
        return _search.trial_seed(self.seed, number)

    def parameter_targets(self) -> dict[str, tuple[str, str]]:
        """The field each searched parameter sets: name -> (section, field).

        ``("model", "width")`` and ``("model", "depth")`` are the virtual fields that set
        ``model.hidden_sizes``.
        """
        return {name: resolve(name, ("search", "parameters", name)) for name in self.search.parameters}

    def trial_spec(self, params: Mapping[str, Any], stage: int, *, seed: int | None = None) -> TrainSpec:
        """The network one trial trains: the study's spec with ``params`` applied.

        Args:
            params: A value for every searched parameter, by its name in the study file.
            stage: 0-based stage index; its epochs replace ``training.epochs``.
            seed: The trial's seed (None: the study's seed).

        Returns:
            A validated :class:`TrainSpec` named after the study.

        Raises:
            SpecError: A missing or unknown parameter, a categorical value that is not a choice, or
                a value invalid for its field.
        """
        if not 0 <= stage < len(self.search.stages):
            raise SpecError(f"trial parameters: stage {stage} is not in 0..{len(self.search.stages) - 1}")
        names = set(self.search.parameters)
        if set(params) != names:
            missing, unknown = sorted(names - set(params)), sorted(set(params) - names)
            raise SpecError(
                f"trial parameters: missing {shorten(str(missing))}, unknown {shorten(str(unknown))}",
                field="search.parameters",
            )
        sections: dict[str, dict[str, Any]] = {
            "model": self.model.model_dump(),
            "training": self.training.model_dump(),
        }
        sections["training"]["epochs"] = self.stage_epochs(stage)
        shape: dict[str, Any] = {}  # model.width and model.depth, which set hidden_sizes together
        for name, (section, field) in self.parameter_targets().items():
            value = self._trial_value(name, params[name])
            if section == "model" and field in VIRTUAL:
                shape[field] = value
            else:
                sections[section][field] = value
        if shape:
            sections["model"]["hidden_sizes"] = self._hidden_sizes(shape.get("width"), shape.get("depth"))
        data = {
            "name": self.name,
            "seed": self.seed if seed is None else seed,
            "dataset": self.dataset.model_dump(),
        }
        try:
            return TrainSpec.model_validate({**data, **sections})
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in err["loc"])
            raise SpecError(f"trial parameters: {where}: {err['msg']}", field=where) from None

    def _trial_value(self, name: str, value: Any) -> Any:
        """A trial's value of parameter ``name`` as plain data, a categorical one checked."""
        if not isinstance(value, str | int | float) and hasattr(value, "item"):
            value = value.item()  # a NumPy scalar from a sampler
        param = self.search.parameters[name]
        if isinstance(param, CategoricalParameter) and not any(
            value == c and isinstance(value, bool) == isinstance(c, bool) for c in param.choices
        ):
            raise SpecError(
                f"trial parameters: {name}={_fmt(value)} is not one of "
                f"{shorten('[' + ', '.join(_fmt(c) for c in param.choices) + ']', 4 * ECHO_LIMIT)}",
                field=name,
            )
        return value

    def _hidden_sizes(self, width: Any, depth: Any) -> list[Any]:
        """``[width] * depth``, either one taken from ``model.hidden_sizes`` when not searched."""
        hidden = self.model.hidden_sizes
        width = width if width is not None else hidden[0]
        depth = depth if depth is not None else len(hidden)
        if not isinstance(depth, int) or isinstance(depth, bool) or not 0 <= depth <= MAX_DEPTH:
            raise SpecError(f"trial parameters: depth {_fmt(depth)} is not in 0..{MAX_DEPTH}", field="depth")
        return [width] * depth

    def canonical_json(self) -> str:
        """The spec as stored: JSON with sorted keys, every default filled, no whitespace."""
        return json.dumps(
            self.model_dump(mode="json"),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=True,
            allow_nan=False,
        )

    def spec_hash(self) -> str:
        """sha256 (hex) of :meth:`canonical_json`: equal for equal studies, whatever the file's layout."""
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()

    @classmethod
    def from_json(cls, text: str | bytes) -> StudySpec:
        """A spec back from :meth:`canonical_json` (as stored in the database)."""
        return cls.model_validate_json(text)


def load_study_spec(path: str | Path) -> StudySpec:
    """Read and validate a study file (``hpo submit study.yaml``).

    Raises:
        SpecError: unreadable file, YAML error or invalid study: one line, ``file:line:col: field: message``.
    """
    return load_spec(path, StudySpec)


def load_study_file(path: str | Path, overrides: Sequence[str] = ()) -> SpecFile[StudySpec]:
    """:func:`load_study_spec`, with the file's positions for checks that come later (the data),
    and ``--set KEY=VALUE`` overrides applied (see :func:`~hpo.spec.load_spec_file`)."""
    return load_spec_file(path, StudySpec, overrides)


def study_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a study file, for ``hpo schema`` and editors.

    It describes the structure; some checks (a parameter's range within its field's limits, NaN)
    only ``hpo`` itself makes.
    """
    schema = StudySpec.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
        "title": "hpo study",
        "description": "A study file for `hpo submit`: " + (StudySpec.__doc__ or "").strip(),
    }
