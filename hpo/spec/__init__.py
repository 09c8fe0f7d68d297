"""Study files: strict YAML, validated by pydantic models, with errors that point into the file."""

from __future__ import annotations

from ._load import load_spec, load_train_spec, validation_message
from ._models import DatasetSpec, ModelSpec, TrainingSpec, TrainSpec
from ._yaml import Positions, load_yaml

__all__ = [
    "DatasetSpec",
    "ModelSpec",
    "Positions",
    "TrainSpec",
    "TrainingSpec",
    "load_spec",
    "load_train_spec",
    "load_yaml",
    "validation_message",
]
