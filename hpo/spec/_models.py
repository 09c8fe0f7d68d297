"""The study file's sections as pydantic models.

Every model forbids unknown keys (a typo such as ``lerning_rate`` is an error, not a silently
ignored field), rejects NaN and infinities, and does not coerce strings into numbers or
booleans.
"""

from __future__ import annotations

from typing import Annotated, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

__all__ = [
    "DATASET_KIND_RULES",
    "DATASET_OPTIONS",
    "DatasetKindName",
    "DatasetKindRules",
    "DatasetSpec",
    "ModelSpec",
    "TrainSpec",
    "TrainingSpec",
]

Fraction = Annotated[float, Field(ge=0, lt=1)]
PositiveFloat = Annotated[float, Field(gt=0)]
OpenUnit = Annotated[float, Field(ge=0, lt=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True, frozen=True)


class DatasetKindRules(NamedTuple):
    """What a dataset kind's ``path`` is (``"file"``, ``"directory"``, or None: it takes none) and
    the options only it reads."""

    path: Literal["file", "directory"] | None
    options: frozenset[str] = frozenset()


# The engine's registry (engine.datasets.KINDS) says the same; tests/hpo/test_dataset_kinds.py
# checks that the two agree. hpo.spec keeps its own copy because importing engine imports NumPy,
# and validating a study file must not.
DatasetKindName = Literal["digits", "mnist", "npz", "csv"]
DATASET_KIND_RULES: dict[str, DatasetKindRules] = {
    "digits": DatasetKindRules(path=None),
    "mnist": DatasetKindRules(path="directory"),
    "npz": DatasetKindRules(path="file"),
    "csv": DatasetKindRules(path="file", options=frozenset({"label_column"})),
}
DATASET_OPTIONS = ("label_column",)
"""The fields of :class:`DatasetSpec` that only some kinds read."""


def _describe_paths() -> str:
    takes = {
        what: ", ".join(k for k, rules in DATASET_KIND_RULES.items() if rules.path == what)
        for what in ("directory", "file")
    }
    return f"Directory ({takes['directory']}) or file ({takes['file']})."


class DatasetSpec(_Strict):
    """Where the data comes from and how it is split.

    The split is drawn once from ``seed`` and shared by every trial of a study. The test split is
    held out from the search entirely. Whether ``path`` is required and which options (such as
    ``label_column``) may be given depend on the kind (:data:`DATASET_KIND_RULES`).
    """

    kind: DatasetKindName = Field(description="Data source.")
    path: str | None = Field(None, description=_describe_paths())
    subset: Annotated[int, Field(ge=2)] | None = Field(
        None, description="Use only this many rows for train+validation (the book uses 500)."
    )
    val_fraction: Annotated[float, Field(gt=0, lt=1)] = Field(
        0.2, description="Share of the subset for validation."
    )
    test_fraction: Fraction = Field(0.2, description="Share of all rows held out for the final test.")
    normalize: Literal["auto", "scale", "standardize", "none"] = "auto"
    label_column: str | int = Field(-1, description="Label column of a csv file (name or index).")
    seed: Annotated[int, Field(ge=0)] = Field(0, description="Seed of the split.")

    @field_validator(*DATASET_OPTIONS)
    @classmethod
    def _option_matches_kind(cls, value: object, info: ValidationInfo) -> object:
        kind, name = info.data.get("kind"), str(info.field_name)
        rules = DATASET_KIND_RULES.get(kind) if isinstance(kind, str) else None
        # The default is allowed with every kind: a stored study's spec carries every field.
        if rules is not None and name not in rules.options and value != cls.model_fields[name].default:
            takers = ", ".join(k for k, r in DATASET_KIND_RULES.items() if name in r.options)
            raise ValueError(f"not used with kind {kind!r} (only with {takers})")
        return value

    @model_validator(mode="after")
    def _path_matches_kind(self) -> DatasetSpec:
        takes_path = DATASET_KIND_RULES[self.kind].path is not None
        if not takes_path and self.path is not None:
            raise ValueError(f"path is not used with kind '{self.kind}'")
        if takes_path and not self.path:
            raise ValueError(f"path is required with kind '{self.kind}'")
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("val_fraction + test_fraction must leave rows for training")
        return self


class ModelSpec(_Strict):
    """The network: ``input -> hidden_sizes -> classes`` with one activation throughout."""

    hidden_sizes: Annotated[
        list[Annotated[int, Field(ge=1, le=65536)]], Field(min_length=0, max_length=64)
    ] = Field(default_factory=lambda: [100, 100])
    activation: Literal["relu", "sigmoid", "tanh"] = "relu"
    weight_init: Literal["std", "xavier", "he"] = "he"
    init_std: PositiveFloat = Field(0.01, description="Standard deviation for weight_init 'std'.")
    batchnorm: bool = False
    dropout: OpenUnit = 0.0
    weight_decay: Annotated[float, Field(ge=0)] = Field(0.0, description="L2 coefficient lambda.")
    loss: Literal["cross_entropy", "squared_error"] = "cross_entropy"


class TrainingSpec(_Strict):
    """How each network is trained."""

    optimizer: Literal["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"] = "sgd"
    lr: PositiveFloat = 0.01
    momentum: OpenUnit = Field(0.9, description="For momentum and nesterov.")
    beta1: OpenUnit = Field(0.9, description="For adam.")
    beta2: OpenUnit = Field(0.999, description="For adam.")
    decay_rate: OpenUnit = Field(0.99, description="For rmsprop.")
    epochs: Annotated[int, Field(ge=1, le=100_000)] = 20
    batch_size: Annotated[int, Field(ge=1, le=1_000_000)] = 100
    eval_interval: Annotated[int, Field(ge=1)] = Field(1, description="Evaluate every this many epochs.")
    dtype: Literal["float32", "float64"] = "float32"

    def optimizer_options(self) -> dict[str, float]:
        """The options that apply to the chosen optimizer."""
        return {
            "momentum": {"momentum": self.momentum},
            "nesterov": {"momentum": self.momentum},
            "adam": {"beta1": self.beta1, "beta2": self.beta2},
            "rmsprop": {"decay_rate": self.decay_rate},
        }.get(self.optimizer, {})


class TrainSpec(_Strict):
    """One network to train: the part of a study file that ``hpo train`` runs."""

    name: (
        Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")] | None
    ) = None
    seed: Annotated[int, Field(ge=0)] = Field(0, description="Seed of weights, shuffling and dropout.")
    dataset: DatasetSpec
    model: ModelSpec = Field(default_factory=ModelSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
