"""The study file of ``hpo submit``: what to train, what to search, and how to score and stop.

A study file is a :class:`~hpo.spec.TrainSpec` (``dataset``, ``model``, ``training``: the network
every trial starts from) plus four sections whose names follow Optuna, W&B sweeps and Katib:

- ``search``: the sampler, the stages (trial count and epoch budget of each) and the parameters,
  each a float or int range or a list of choices, aimed at a field of ``model`` or ``training``;
- ``objective``: the validation metric, how a trial's curve is reduced to one value, the direction;
- ``limits``: failed trials, a trial's time, and deliveries of one trial before it counts as failed;
- ``pruner``: optional early stopping of trials that fall behind.

Every check that needs more than one section (a parameter's name must resolve to a field, its range
must lie within that field's own limits, ...) runs in :class:`StudySpec`'s validator and reports the
offending key, so :func:`~hpo.spec.load_spec` can point at its line and column.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import math
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from .._errors import SpecError
from ..search import DEFAULT_STAGES, SearchStrategy, get_strategy, strategy_names
from . import _search
from ._load import SpecFile, load_spec, load_spec_file
from ._models import DatasetSpec, ModelSpec, TrainingSpec, TrainSpec, _Strict
from ._yaml import ECHO_LIMIT, shorten

__all__ = [
    "CategoricalParameter",
    "FloatParameter",
    "IntParameter",
    "LimitsSpec",
    "NarrowingSpec",
    "ObjectiveSpec",
    "Parameter",
    "PrunerSpec",
    "SearchSpec",
    "StageSpec",
    "StudySpec",
    "load_study_file",
    "load_study_spec",
    "study_json_schema",
]

Loc = tuple[str | int, ...]
Choice = str | int | float | bool

_SECTIONS: dict[str, type[BaseModel]] = {"model": ModelSpec, "training": TrainingSpec}
_VIRTUAL = ("width", "depth")
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
_MAX_DEPTH = next(
    (m.max_length for m in ModelSpec.model_fields["hidden_sizes"].metadata if hasattr(m, "max_length")), 64
)
"""Most hidden layers a model may have (``model.hidden_sizes``' own limit)."""


def _located(loc: Loc, message: str, value: Any = None) -> ValidationError:
    """A validation error at ``loc`` (relative to the model being validated).

    pydantic keeps the location of a :class:`ValidationError` raised inside a validator and
    prefixes it with the enclosing one, so the error can name a key deeper than the validator's
    own model (``search.parameters.lr.high`` rather than ``search.parameters.lr``).
    """
    error = PydanticCustomError("study_spec", "{message}", {"message": message})
    return ValidationError.from_exception_data(
        "StudySpec", [InitErrorDetails(type=error, loc=loc, input=value)]
    )


_LONG_INT = 10**ECHO_LIMIT
"""Integers from here on are described, not printed."""


def _fmt(value: Any) -> str:
    """A value as a message echoes it: a string quoted, a number as JSON, cut to one short line."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= _LONG_INT:
        return f"an integer of {value.bit_length()} bits"  # not converted: str() refuses 4300+ digits
    return shorten(repr(value) if isinstance(value, str) else json.dumps(value))


# --- search -----------------------------------------------------------------------------------


class _RangeChecks:
    """The checks shared by float and int ranges (a mixin: the fields live in the models)."""

    if TYPE_CHECKING:
        low: float
        high: float
        log: bool
        bounds: list[float] | list[int] | None

    def _check_range(self) -> None:
        if not self.low < self.high:
            raise _located(
                ("high",), f"high {_fmt(self.high)} must be greater than low {_fmt(self.low)}", self.high
            )
        if self.log and self.low <= 0:
            raise _located(("low",), f"a log range needs low > 0, got {_fmt(self.low)}", self.low)
        if self.bounds is not None:
            lo, hi = self.bounds
            if not lo < hi:
                raise _located(("bounds",), f"bounds [{_fmt(lo)}, {_fmt(hi)}] must have lo < hi", self.bounds)
            if self.log and lo <= 0:
                raise _located(("bounds",), f"bounds of a log range must be > 0, got {_fmt(lo)}", self.bounds)
            if not (lo <= self.low and self.high <= hi):
                raise _located(
                    ("bounds",),
                    f"bounds [{_fmt(lo)}, {_fmt(hi)}] must contain the range "
                    f"[{_fmt(self.low)}, {_fmt(self.high)}]",
                    self.bounds,
                )

    def endpoints(self) -> list[tuple[Loc, float]]:
        """The extreme values a sampler may draw (``bounds`` too, when given), with where each is set."""
        points: list[tuple[Loc, float]] = [(("low",), self.low), (("high",), self.high)]
        if self.bounds is not None:
            points += [(("bounds", 0), self.bounds[0]), (("bounds", 1), self.bounds[1])]
        return points


class FloatParameter(_RangeChecks, _Strict):
    """A real-valued range, sampled uniformly (or uniformly in log10 space with ``log: true``)."""

    type: Literal["float"] = Field(description="A real-valued range.")
    low: float = Field(description="Lower end of the first stage's range.")
    high: float = Field(description="Upper end of the first stage's range (greater than low).")
    log: bool = Field(False, description="Sample in log10 space (low must be > 0).")
    bounds: Annotated[list[float], Field(min_length=2, max_length=2)] | None = Field(
        None,
        description="Hard limits [lo, hi] that narrowing may pan out to; they must contain [low, high]. "
        "Without them, narrowing may pan anywhere the field itself allows (dropout < 1, lr > 0, ...).",
    )

    @model_validator(mode="after")
    def _valid_range(self) -> FloatParameter:
        self._check_range()
        return self


class IntParameter(_RangeChecks, _Strict):
    """An integer range ``low, low + step, ..., high``."""

    type: Literal["int"] = Field(description="An integer range.")
    low: int = Field(description="Lower end of the first stage's range.")
    high: int = Field(description="Upper end of the first stage's range (greater than low).")
    log: bool = Field(False, description="Sample in log10 space (low must be >= 1; step must be 1).")
    step: Annotated[int, Field(ge=1)] = Field(
        1, description="Spacing of the values; high - low is a multiple."
    )
    bounds: Annotated[list[int], Field(min_length=2, max_length=2)] | None = Field(
        None,
        description="Hard limits [lo, hi] that narrowing may pan out to; they must contain [low, high].",
    )

    @model_validator(mode="after")
    def _valid_range(self) -> IntParameter:
        self._check_range()
        if self.log and self.step != 1:
            raise _located(("step",), f"a log range needs step 1, got {_fmt(self.step)}", self.step)
        if (self.high - self.low) % self.step:
            raise _located(
                ("high",),
                f"high - low ({_fmt(self.high - self.low)}) must be a multiple of step {_fmt(self.step)}",
                self.high,
            )
        return self


class CategoricalParameter(_Strict):
    """A list of choices."""

    type: Literal["categorical"] = Field(description="A choice among fixed values.")
    choices: Annotated[list[Choice], Field(min_length=1, max_length=100)] = Field(
        description="1 to 100 distinct strings, numbers or booleans."
    )

    @field_validator("choices", mode="before")
    @classmethod
    def _primitive_choices(cls, value: Any) -> Any:
        if isinstance(value, list):
            for i, choice in enumerate(value):
                if not isinstance(choice, str | int | float | bool):
                    raise _located((i,), f"a choice must be a string, number or boolean, got {_kind(choice)}")
                if isinstance(choice, float) and not math.isfinite(choice):
                    raise _located((i,), "Input should be a finite number", choice)
        return value

    @field_validator("choices", mode="after")
    @classmethod
    def _unique_choices(cls, value: list[Choice]) -> list[Choice]:
        seen: dict[tuple[bool, Choice], int] = {}
        for i, choice in enumerate(value):
            key = (isinstance(choice, bool), choice)
            if key in seen:
                raise _located((i,), f"duplicate choice {_fmt(choice)} (also choices[{seen[key]}])", choice)
            seen[key] = i
        return value


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", type(None): "null"}.get(type(value), type(value).__name__)


Parameter = Annotated[FloatParameter | IntParameter | CategoricalParameter, Field(discriminator="type")]
"""One searched parameter, told apart by its ``type``."""


class StageSpec(_Strict):
    """One stage: how many trials, each trained for how many epochs."""

    trials: Annotated[int, Field(ge=1, le=100_000)] = Field(description="Trials in this stage.")
    epochs: Annotated[int, Field(ge=1, le=100_000)] | None = Field(
        None,
        description="Epochs of each trial in this stage (null: training.epochs); early stages may be "
        "shorter.",
    )


class NarrowingSpec(_Strict):
    """The rule that narrows each range between stages (sampler ``narrowing`` only)."""

    top_fraction: Annotated[float, Field(gt=0, le=1)] = Field(
        0.25, description="The new ranges come from this top fraction of a stage's finished trials."
    )
    min_top: Annotated[int, Field(ge=1)] = Field(
        3, description="Use at least this many top trials (one lucky trial must not collapse a range)."
    )
    margin: Annotated[float, Field(ge=0, le=10)] = Field(
        0.15, description="Widen the window around the top trials by this fraction of its width on each side."
    )
    min_width: Annotated[float, Field(gt=0, le=1)] = Field(
        0.1,
        description="A range never narrows below this fraction of its first stage's width "
        "(widths of log parameters in log10 space).",
    )
    pan: bool = Field(
        True,
        description="When the top trials sit at an edge of the range, move the window past that edge "
        "(within bounds, when given).",
    )


def default_stages(sampler: str, trials: int) -> list[dict[str, int]]:
    """The stages ``search.trials`` stands for, as the sampler's strategy splits them (narrowing:
    :data:`~hpo.search.DEFAULT_STAGES` equal stages; the others: one stage)."""
    return [{"trials": n} for n in get_strategy(sampler).split(trials)]


def _sampler_schema(schema: dict[str, Any]) -> None:
    schema["enum"] = list(strategy_names())


def _stages_or_trials_schema(schema: dict[str, Any]) -> None:
    # In JSON Schema terms: stages or trials (a spec hpo dumped has both, which must agree).
    schema["required"] = [name for name in schema.get("required", []) if name != "stages"]
    schema["anyOf"] = [{"required": ["stages"]}, {"required": ["trials"]}]


class SearchSpec(_Strict):
    """What is searched, with which sampler, in which stages."""

    model_config = ConfigDict(json_schema_extra=lambda schema: _stages_or_trials_schema(schema))

    sampler: Annotated[str, Field(json_schema_extra=_sampler_schema)] = Field(
        "narrowing",
        description="The search: "
        + "; ".join(f"{name}: {get_strategy(name).summary}" for name in strategy_names())
        + ".",
    )
    trials: Annotated[int, Field(ge=1, le=100_000)] | None = Field(
        None,
        description="Instead of stages: the total number of trials, split by hpo into "
        f"{DEFAULT_STAGES} equal stages for the narrowing sampler, one stage for the others.",
    )
    stages: Annotated[list[StageSpec], Field(min_length=1, max_length=20)] = Field(
        description="The stages, run one after another; each stage's trials run in parallel "
        "(or give trials instead)."
    )
    parameters: Annotated[dict[str, Parameter], Field(min_length=1, max_length=64)] = Field(
        description="Searched parameters by name: a field of model or training (`lr`, `training.lr`), "
        "or model.width / model.depth (hidden_sizes = [width] * depth)."
    )
    narrowing: NarrowingSpec | None = Field(
        None,
        validate_default=True,
        description="How ranges narrow between stages (sampler narrowing only; defaults filled).",
    )
    in_flight: Annotated[int, Field(ge=1, le=100_000)] | None = Field(
        None,
        description="Most trials running at once for the sequential samplers tpe and cmaes "
        "(null: 4; set it to about twice your worker processes).",
    )

    @model_validator(mode="before")
    @classmethod
    def _stages_from_trials(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        trials, stages = data.get("trials"), data.get("stages")
        if trials is None:
            if stages is None:
                raise ValueError("give stages (a list of {trials, epochs}) or trials (a total hpo splits)")
            return data
        if type(trials) is not int or not 1 <= trials <= 100_000:
            return data  # the field's own check reports it
        if stages is not None:
            # Both: a dumped spec has both (trials and the stages it was split into); they must agree.
            counts = (
                [st.get("trials") if isinstance(st, Mapping) else None for st in stages]
                if isinstance(stages, list)
                else [None]
            )
            if all(type(n) is int for n in counts) and sum(counts) != trials:
                raise ValueError(
                    f"trials is {trials} but the stages add up to {_fmt(sum(counts))}: give one of them"
                )
            return data
        sampler = data.get("sampler", "narrowing")
        if sampler not in strategy_names():
            return data  # the field's own check reports it
        return {**data, "stages": default_stages(sampler, trials)}

    @field_validator("sampler", mode="after")
    @classmethod
    def _known_sampler(cls, value: str) -> str:
        names = strategy_names()
        if value not in names:
            quoted = [repr(n) for n in names]
            raise ValueError(f"Input should be {', '.join(quoted[:-1])} or {quoted[-1]}")
        return value

    @field_validator("narrowing", mode="after")
    @classmethod
    def _narrowing_fits_sampler(
        cls, value: NarrowingSpec | None, info: ValidationInfo
    ) -> NarrowingSpec | None:
        sampler = info.data.get("sampler")
        if sampler is None:  # the sampler itself is invalid; that error is reported
            return value
        if get_strategy(sampler).narrows:
            return value if value is not None else NarrowingSpec()
        if value is not None:
            raise ValueError(f"only used with sampler narrowing (sampler is {sampler}); remove this section")
        return value

    @field_validator("in_flight", mode="after")
    @classmethod
    def _in_flight_fits_sampler(cls, value: int | None, info: ValidationInfo) -> int | None:
        sampler = info.data.get("sampler")
        if value is not None and sampler is not None and not get_strategy(sampler).sequential:
            raise ValueError(
                f"only used with the sequential samplers tpe and cmaes (sampler {sampler} samples "
                "a whole stage at once)"
            )
        return value


# --- objective, limits, pruner -----------------------------------------------------------------

_METRIC_DIRECTION = {"val_acc": "maximize", "val_loss": "minimize"}


class ObjectiveSpec(_Strict):
    """What a trial is scored by (always on the validation split; the test split is held out)."""

    metric: Literal["val_acc", "val_loss"] = Field("val_acc", description="Validation accuracy or loss.")
    reduce: Literal["final", "best"] = Field(
        "final", description="final: the value at the last evaluated epoch; best: the best evaluated value."
    )
    direction: Literal["maximize", "minimize"] | None = Field(
        None,
        validate_default=True,
        description="Optimization direction (null: maximize for val_acc, minimize for val_loss).",
    )

    @field_validator("direction", mode="after")
    @classmethod
    def _direction_fits_metric(cls, value: str | None, info: ValidationInfo) -> str | None:
        metric = info.data.get("metric")
        if metric is None:
            return value
        expected = _METRIC_DIRECTION[metric]
        if value is None:
            return expected
        if value != expected:
            raise ValueError(
                f"direction {value} does not fit metric {metric} (use {expected}, or leave it out)"
            )
        return value


class LimitsSpec(_Strict):
    """When a study or a trial gives up."""

    max_failed_trials: Annotated[int, Field(ge=0)] = Field(
        10, description="The study fails when more trials than this have failed."
    )
    trial_time_limit: Annotated[float, Field(gt=0)] | None = Field(
        None, description="Seconds one trial may train before it is stopped and failed (null: no limit)."
    )
    max_attempts: Annotated[int, Field(ge=1, le=20)] = Field(
        3, description="Deliveries of one trial (e.g. after a worker died) before it is recorded as failed."
    )


class PrunerSpec(_Strict):
    """Stopping trials early whose intermediate objective falls behind (Optuna's pruners)."""

    kind: Literal["none", "median", "percentile", "hyperband"] = Field("none", description="The pruner.")
    warmup_epochs: Annotated[int, Field(ge=0)] = Field(2, description="Never prune before this many epochs.")
    percentile: Annotated[float, Field(gt=0, lt=100)] | None = Field(
        None,
        description="Prune below this percentile of the other trials (kind percentile only, required there).",
    )

    @model_validator(mode="after")
    def _percentile_fits_kind(self) -> PrunerSpec:
        if self.kind == "percentile" and self.percentile is None:
            raise ValueError("percentile is required with kind percentile")
        if self.kind != "percentile" and self.percentile is not None:
            raise _located(("percentile",), f"only used with kind percentile (kind is {self.kind})")
        return self


# --- the study -----------------------------------------------------------------------------------


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

    @model_validator(mode="after")
    def _parameters_fit_fields(self) -> StudySpec:
        targets: dict[tuple[str, str], str] = {}
        for name, param in self.search.parameters.items():
            loc: Loc = ("search", "parameters", name)
            target = _resolve(name, loc)
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
        kind = _field_kind(section, field)
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
        if section == "model" and field in _VIRTUAL:
            # Each on its own: a width as one layer, a depth of one-unit layers.
            if not isinstance(value, int) or isinstance(value, bool):
                return "Input should be a valid integer"
            if field == "depth" and not 0 <= value <= _MAX_DEPTH:
                return f"the depth must be in 0..{_MAX_DEPTH} (model.hidden_sizes' limit)"
            sizes = [value] if field == "width" else [1] * value
            data = {**self.model.model_dump(), "hidden_sizes": sizes}
        else:
            base = self.model if section == "model" else self.training
            data = {**base.model_dump(), field: value}
        try:
            _SECTIONS[section].model_validate(data)
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
        return {name: _resolve(name, ("search", "parameters", name)) for name in self.search.parameters}

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
        width = depth = None
        for name, (section, field) in self.parameter_targets().items():
            value = params[name]
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
            if (section, field) == ("model", "width"):
                width = value
            elif (section, field) == ("model", "depth"):
                depth = value
            else:
                sections[section][field] = value
        if width is not None or depth is not None:
            hidden = self.model.hidden_sizes
            width = width if width is not None else hidden[0]
            depth = depth if depth is not None else len(hidden)
            if not isinstance(depth, int) or isinstance(depth, bool) or not 0 <= depth <= _MAX_DEPTH:
                raise SpecError(
                    f"trial parameters: depth {_fmt(depth)} is not in 0..{_MAX_DEPTH}", field="depth"
                )
            sections["model"]["hidden_sizes"] = [width] * depth
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


def _field_kind(section: str, field: str) -> str:
    """``float``, ``int``, ``bool``, ``choice`` (a Literal) or ``other``."""
    if section == "model" and field in _VIRTUAL:
        return "int"
    annotation = _SECTIONS[section].model_fields[field].annotation
    if typing.get_origin(annotation) is Literal:
        return "choice"
    return {float: "float", int: "int", bool: "bool"}.get(annotation, "other")  # type: ignore[arg-type]


@functools.cache
def _valid_names() -> dict[str, tuple[str, str]]:
    """Every name a parameter may have (short and dotted) and its target."""
    fields = [(s, f) for s, cls in _SECTIONS.items() for f in cls.model_fields] + [
        ("model", v) for v in _VIRTUAL
    ]
    fields = [t for t in fields if t not in _NOT_SEARCHABLE]
    out = {f"{s}.{f}": (s, f) for s, f in fields}
    for s, f in fields:
        owners = [t for t in fields if t[1] == f]
        if len(owners) == 1:
            out[f] = (s, f)
    return out


def _resolve(name: str, loc: Loc) -> tuple[str, str]:
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
    if not section and any(field in cls.model_fields for cls in _SECTIONS.values()):
        owners = [s for s, cls in _SECTIONS.items() if field in cls.model_fields]
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
