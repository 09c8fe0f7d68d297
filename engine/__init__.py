"""NumPy neural networks for hyperparameter search: layers, networks, optimizers, a trainer
and datasets. Depends on NumPy and the standard library only.
"""

from __future__ import annotations

from ._errors import ConfigError, DatasetError, EngineError
from ._gradcheck import numerical_gradient, relative_error
from ._layers import (
    Affine,
    BatchNorm,
    Dropout,
    Layer,
    LossLayer,
    ReLU,
    Sigmoid,
    SoftmaxWithLoss,
    SquaredErrorLoss,
    Tanh,
    cross_entropy_error,
    softmax,
    sum_squared_error,
)
from ._net import ACTIVATIONS, LOSSES, WEIGHT_INITS, MultiLayerNet, estimate_memory, init_scale
from ._optimizers import (
    OPTIMIZERS,
    SGD,
    AdaGrad,
    Adam,
    Momentum,
    Nesterov,
    Optimizer,
    RMSprop,
    make_optimizer,
)
from ._parameter import Parameter
from ._trainer import EpochCallback, EpochRecord, Outcome, Trainer, TrainResult
from .datasets import DATASET_KINDS, Dataset, Split, load_arrays, load_dataset, read_idx, split_arrays

__all__ = [
    "ACTIVATIONS",
    "DATASET_KINDS",
    "LOSSES",
    "OPTIMIZERS",
    "SGD",
    "WEIGHT_INITS",
    "AdaGrad",
    "Adam",
    "Affine",
    "BatchNorm",
    "ConfigError",
    "Dataset",
    "DatasetError",
    "Dropout",
    "EngineError",
    "EpochCallback",
    "EpochRecord",
    "Layer",
    "LossLayer",
    "Momentum",
    "MultiLayerNet",
    "Nesterov",
    "Optimizer",
    "Outcome",
    "Parameter",
    "RMSprop",
    "ReLU",
    "Sigmoid",
    "SoftmaxWithLoss",
    "Split",
    "SquaredErrorLoss",
    "Tanh",
    "TrainResult",
    "Trainer",
    "cross_entropy_error",
    "estimate_memory",
    "init_scale",
    "load_arrays",
    "load_dataset",
    "make_optimizer",
    "numerical_gradient",
    "read_idx",
    "relative_error",
    "softmax",
    "split_arrays",
    "sum_squared_error",
]
