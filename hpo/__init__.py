"""hpo: hyperparameter search for NumPy networks by staged range narrowing.

The public names are imported on first use: ``import hpo`` does no work and loads neither
NumPy nor a database driver, so entry points can configure the process (BLAS threads) first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_getattr

__version__ = "0.1.0"
"""The version of the ``hpo-narrowing`` distribution (the import package is ``hpo``); a test checks
that it equals the installed distribution's."""

if TYPE_CHECKING:
    from ._errors import HPOError, SpecError
    from ._settings import Settings, get_settings
    from ._urls import InvalidURLError
    from .spec import DatasetSpec, ModelSpec, TrainingSpec, TrainSpec, load_train_spec

_EXPORTS = {
    "HPOError": "._errors",
    "SpecError": "._errors",
    "InvalidURLError": "._urls",
    "Settings": "._settings",
    "get_settings": "._settings",
    "DatasetSpec": ".spec",
    "ModelSpec": ".spec",
    "TrainingSpec": ".spec",
    "TrainSpec": ".spec",
    "load_train_spec": ".spec",
}

__all__ = [
    "DatasetSpec",
    "HPOError",
    "InvalidURLError",
    "ModelSpec",
    "Settings",
    "SpecError",
    "TrainSpec",
    "TrainingSpec",
    "__version__",
    "get_settings",
    "load_train_spec",
]


__getattr__ = lazy_getattr(__name__, _EXPORTS)
