"""Study files: strict YAML, validated by pydantic models, with errors that point into the file."""

from __future__ import annotations

from ._load import SpecFile, load_spec, load_spec_file, load_train_spec, validation_message
from ._models import DatasetSpec, ModelSpec, TrainingSpec, TrainSpec
from ._parameters import CategoricalParameter, FloatParameter, IntParameter, Parameter
from ._sections import (
    DEFAULT_CHECKPOINT_EVERY,
    CheckpointsSpec,
    LimitsSpec,
    NarrowingSpec,
    ObjectiveSpec,
    PrunerSpec,
    SearchSpec,
    StageSpec,
    SyntheticSpec,
)
from ._study import StudySpec, load_study_file, load_study_spec, study_json_schema
from ._yaml import Positions, load_yaml

__all__ = [
    "DEFAULT_CHECKPOINT_EVERY",
    "CategoricalParameter",
    "CheckpointsSpec",
    "DatasetSpec",
    "FloatParameter",
    "IntParameter",
    "LimitsSpec",
    "ModelSpec",
    "NarrowingSpec",
    "ObjectiveSpec",
    "Parameter",
    "Positions",
    "PrunerSpec",
    "SearchSpec",
    "SpecFile",
    "StageSpec",
    "StudySpec",
    "SyntheticSpec",
    "TrainSpec",
    "TrainingSpec",
    "load_spec",
    "load_spec_file",
    "load_study_file",
    "load_study_spec",
    "load_train_spec",
    "load_yaml",
    "study_json_schema",
    "validation_message",
]
