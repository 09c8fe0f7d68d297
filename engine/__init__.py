"""NumPy neural networks for hyperparameter search: layers, networks, optimizers, a trainer,
checkpoints and datasets. Depends on NumPy and the standard library only.
"""

from __future__ import annotations

from ._checkpoint import FORMAT_VERSION, Checkpoint, OptimizerState, TrainerPosition, load_model, save_model
from ._errors import CheckpointError, ConfigError, DatasetError, EngineError
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
from ._net import (
    ACTIVATIONS,
    LOSSES,
    WEIGHT_INITS,
    MultiLayerNet,
    estimate_memory,
    init_scale,
    state_shapes,
)
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
from ._preprocessing import Preprocessing
from ._records import EpochCallback, EpochRecord, Outcome, TrainResult
from ._trainer import Trainer
from ._version import __version__
from .datasets import DATASET_KINDS, Dataset, Split, load_arrays, load_dataset, read_idx, split_arrays

__all__ = [
    "ACTIVATIONS",
    "DATASET_KINDS",
    "FORMAT_VERSION",
    "LOSSES",
    "OPTIMIZERS",
    "SGD",
    "WEIGHT_INITS",
    "AdaGrad",
    "Adam",
    "Affine",
    "BatchNorm",
    "Checkpoint",
    "CheckpointError",
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
    "OptimizerState",
    "Outcome",
    "Parameter",
    "Preprocessing",
    "RMSprop",
    "ReLU",
    "Sigmoid",
    "SoftmaxWithLoss",
    "Split",
    "SquaredErrorLoss",
    "Tanh",
    "TrainResult",
    "Trainer",
    "TrainerPosition",
    "__version__",
    "cross_entropy_error",
    "estimate_memory",
    "init_scale",
    "load_arrays",
    "load_dataset",
    "load_model",
    "make_optimizer",
    "numerical_gradient",
    "read_idx",
    "relative_error",
    "save_model",
    "softmax",
    "split_arrays",
    "state_shapes",
    "sum_squared_error",
]
