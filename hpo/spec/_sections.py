"""The sections of a study file after the network: search, objective, limits, pruner, checkpoints."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from ..search import DEFAULT_STAGES, get_strategy, strategy_names
from ._models import _Strict
from ._parameters import Parameter, _fmt, _located

__all__ = [
    "DEFAULT_CHECKPOINT_EVERY",
    "CheckpointsSpec",
    "LimitsSpec",
    "NarrowingSpec",
    "ObjectiveSpec",
    "PrunerSpec",
    "SearchSpec",
    "StageSpec",
    "default_stages",
]


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
    pan_growth: Annotated[float, Field(ge=1, le=10)] = Field(
        2.0,
        description="A pan that continues one in the same direction in the stage before goes this "
        "many times as far past the top trials (1: every pan goes margin x width).",
    )
    top_cut: Annotated[float, Field(ge=0, le=1)] = Field(
        0.5,
        description="Narrow only around top trials at least this share of the way from the stage's "
        "median value to its best (never fewer than min_top); 0 keeps the whole top fraction.",
    )
    sampling: Literal["random", "sobol"] = Field(
        "sobol",
        description="How a stage's fresh trials fill its ranges: independent random draws, or a "
        "scrambled Sobol sequence (spread more evenly).",
    )
    promote: Annotated[float, Field(ge=0, lt=1)] = Field(
        0.0,
        description="Share of each later stage's trials that continue the previous stage's best "
        "complete trials from their saved networks (with their parameters and seed), when the "
        "later stage trains more epochs: min(round(promote * its trials), the previous stage's top "
        "trials, its complete trials), halves rounded up; the rest are fresh samples (0: none).",
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


DEFAULT_CHECKPOINT_EVERY = 50
"""Epochs between a trial's mid-run checkpoints by default: none within a 50-epoch book-protocol
trial (its final model is written anyway), so the default costs that trial only the final model's
write (see docs/benchmarks.md); a longer trial loses at most 50 epochs to a dead worker."""


class CheckpointsSpec(_Strict):
    """How a trial's training run is saved to the study's artifact store.

    Every trial's final network (with its optimizer state and its data's normalization) is always
    kept: the test score, ``hpo model`` and ``hpo predict`` read it. ``every`` is the one knob: how
    often a running trial also saves a checkpoint a retry resumes from after its worker died.
    """

    every: Annotated[int, Field(ge=0, le=100_000)] = Field(
        DEFAULT_CHECKPOINT_EVERY,
        description="Epochs between a running trial's checkpoints, which a retry after a worker's death "
        "resumes from (0: none; only the latest is kept). The final network is always kept.",
    )


class SyntheticSpec(_Strict):
    """Trials that do not train: each epoch sleeps ``epoch_seconds`` and reports a score computed
    from the trial's parameters and seed.

    For checking and benchmarking a deployment (queue, workers, database) without the cost of
    training: the trials take the same path as real ones (claim, heartbeats, curves, pruning,
    finish, the next stage), but the dataset is never loaded and no network is kept. The score
    peaks where every searched parameter is in the middle of its first-stage range (on its log
    scale when it has one), so a narrowing study still has something to narrow around.
    """

    epoch_seconds: Annotated[float, Field(ge=0, le=3600)] = Field(
        0.0, description="Seconds each epoch sleeps (0: a no-op trial)."
    )
