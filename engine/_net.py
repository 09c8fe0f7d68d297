"""A fully connected network: Affine -> [BatchNorm] -> activation -> [Dropout], repeated."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any, Literal, cast

import numpy as np
from numpy.typing import DTypeLike, NDArray

from ._errors import CheckpointError, ConfigError
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
    softmax,
)
from ._optimizers import OPTIMIZERS
from ._parameter import Parameter

__all__ = [
    "ACTIVATIONS",
    "LOSSES",
    "WEIGHT_INITS",
    "MultiLayerNet",
    "estimate_memory",
    "init_scale",
    "state_shapes",
]

Array = NDArray[np.floating]
Activation = Literal["relu", "sigmoid", "tanh"]
WeightInit = Literal["std", "xavier", "he"]
Loss = Literal["cross_entropy", "squared_error"]

ACTIVATIONS: dict[str, type[Layer]] = {"relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh}
LOSSES: dict[str, type[LossLayer]] = {"cross_entropy": SoftmaxWithLoss, "squared_error": SquaredErrorLoss}
WEIGHT_INITS = ("std", "xavier", "he")


def init_scale(weight_init: str, fan_in: int, std: float = 0.01) -> float:
    """Standard deviation of the initial weights of a layer with ``fan_in`` inputs.

    Args:
        weight_init: ``"std"`` (a fixed ``std``), ``"xavier"`` (``sqrt(1/fan_in)``, for sigmoid and
            tanh) or ``"he"`` (``sqrt(2/fan_in)``, for ReLU).
        fan_in: Number of inputs of the layer.
        std: The fixed standard deviation used by ``"std"``.
    """
    if weight_init == "std":
        return std
    if weight_init == "xavier":
        return float(np.sqrt(1.0 / fan_in))
    if weight_init == "he":
        return float(np.sqrt(2.0 / fan_in))
    raise ConfigError(f"weight_init must be one of {', '.join(WEIGHT_INITS)}, got {weight_init!r}")


# Arrays of a batch's rows that a training step surely holds per layer width at its peak (each
# layer's output and the gradient flowing back through it), and an evaluation pass (the output).
# More exist (masks, batch-norm intermediates, temporaries): the estimate is a lower bound, so a
# network it refuses could not have been trained, and one it allows may still fail with a
# MemoryError (a trial's one-line reason).
_TRAIN_ROW_COPIES = 2
_EVAL_ROW_COPIES = 1


def estimate_memory(
    input_size: int,
    hidden_sizes: Sequence[int],
    classes: int,
    *,
    batch_size: int,
    optimizer: str = "sgd",
    dtype: DTypeLike = np.float32,
    batchnorm: bool = False,
    eval_batch_size: int = 2048,
) -> int:
    """Bytes that training a :class:`MultiLayerNet` needs at least, besides its data.

    Parameters with their gradients and the optimizer's state, and the activations of the larger
    of a training batch and an evaluation batch. It is a lower bound (peaks measured with
    ``tracemalloc`` are 1.2-3x higher), so that a network it refuses really could not be trained;
    it lets a spec be refused before any array is allocated (``hidden_sizes: [65536] * 64`` needs
    over a terabyte).

    Args:
        input_size: Features per row.
        hidden_sizes: Widths of the hidden layers.
        classes: Output width.
        batch_size: Rows of a training step.
        optimizer: Name in :data:`OPTIMIZERS` (its state is counted).
        dtype: Parameter and activation dtype.
        batchnorm: Whether hidden layers have batch normalization.
        eval_batch_size: Rows of an evaluation pass (the trainer's, or fewer on smaller splits).

    Raises:
        ConfigError: An unknown optimizer or dtype.
    """
    cls = OPTIMIZERS.get(optimizer.lower())
    if cls is None:
        raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    widths = [int(input_size), *(int(w) for w in hidden_sizes), int(classes)]
    params = sum((a + 1) * b for a, b in itertools.pairwise(widths))
    if batchnorm:
        params += 2 * sum(widths[1:-1])  # gamma and beta (running statistics are counted below)
    rows = max(_TRAIN_ROW_COPIES * int(batch_size), _EVAL_ROW_COPIES * int(eval_batch_size))
    per_param = 2 + cls.state_slots  # value, gradient, optimizer state
    activations = rows * sum(widths[1:]) + (2 * sum(widths[1:-1]) if batchnorm else 0)
    return int(np.dtype(dtype).itemsize) * (params * per_param + activations)


class MultiLayerNet:
    """A multi-layer perceptron for classification.

    One training step is one forward pass and one backward pass: :meth:`loss_and_grad` returns
    the loss of the very forward pass whose gradients it leaves in ``param.grad``.

    Parameters are stored twice over without copying: ``params`` lists each layer's arrays
    (``W1``, ``b1``, ...), and ``flat_params`` holds the same memory as two flat parameters, the
    weight matrices (decayed) and the rest. Every optimizer here is elementwise, so stepping
    ``flat_params`` is the same update as stepping ``params``, in 2 NumPy calls instead of 2 per
    layer; the L2 penalty and its gradient are one call each for the same reason.

    Args:
        input_size: Number of input features.
        hidden_sizes: Width of each hidden layer, e.g. ``[100] * 6``.
        output_size: Number of classes.
        activation: ``"relu"``, ``"sigmoid"`` or ``"tanh"``.
        weight_init: ``"std"``, ``"xavier"`` or ``"he"`` (see :func:`init_scale`).
        init_std: The standard deviation used by ``weight_init="std"``.
        batchnorm: Insert batch normalization before each hidden activation.
        dropout: Dropout rate after each hidden activation (0 disables it).
        weight_decay: L2 coefficient ``lambda``; the loss gains ``lambda/2 * sum(W**2)`` over all
            weight matrices (not biases or batch-norm parameters).
        loss: ``"cross_entropy"`` (softmax with loss) or ``"squared_error"``.
        dtype: Floating dtype of parameters and computation (float32 by default).
        rng: Generator (or seed) for the initial weights and the dropout masks.
    """

    # Long for its checks: every argument is validated here, once, so the layers can trust them.
    def __init__(
        self,
        input_size: int,
        hidden_sizes: Sequence[int],
        output_size: int,
        *,
        activation: Activation | str = "relu",
        weight_init: WeightInit | str = "he",
        init_std: float = 0.01,
        batchnorm: bool = False,
        dropout: float = 0.0,
        weight_decay: float = 0.0,
        loss: Loss | str = "cross_entropy",
        dtype: DTypeLike = np.float32,
        rng: np.random.Generator | int | None = None,
    ) -> None:
        dt = np.dtype(dtype)
        if dt.kind != "f":
            raise ConfigError(f"dtype must be a floating type, got {dt}")
        self.dtype: np.dtype[np.floating] = cast("np.dtype[np.floating]", dt)
        if activation not in ACTIVATIONS:
            raise ConfigError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        if loss not in LOSSES:
            raise ConfigError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
        if not 0 <= dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
        if not (weight_decay >= 0 and np.isfinite(weight_decay)):
            raise ConfigError(f"weight_decay must be a finite number >= 0, got {weight_decay}")
        sizes = [int(input_size), *(int(h) for h in hidden_sizes), int(output_size)]
        if min(sizes) < 1:
            raise ConfigError(f"layer sizes must be positive, got {sizes}")
        if weight_init == "std" and not (init_std > 0 and np.isfinite(init_std)):
            raise ConfigError(f"init_std must be a finite number > 0, got {init_std}")

        self.sizes = sizes
        self.weight_decay = float(weight_decay)
        # What the architecture property reports: the constructor's arguments, as plain data.
        self._config: dict[str, Any] = {
            "activation": str(activation),
            "weight_init": str(weight_init),
            "init_std": float(init_std),
            "batchnorm": bool(batchnorm),
            "dropout": float(dropout),
            "loss": str(loss),
        }
        # Separate streams so adding dropout does not change the initial weights of a seed.
        init_rng, self.dropout_rng = _split_rng(rng)

        self.layers: list[Layer] = []
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes), start=1):
            scale = init_scale(str(weight_init), fan_in, init_std)
            W = (init_rng.standard_normal((fan_in, fan_out), dtype=np.float64) * scale).astype(self.dtype)
            b = np.zeros(fan_out, dtype=self.dtype)
            self.layers.append(Affine(W, b, input_grad=i > 1, name=str(i)))
            if i == len(sizes) - 1:
                break
            if batchnorm:
                self.layers.append(BatchNorm(fan_out, self.dtype, name=str(i)))
            self.layers.append(ACTIVATIONS[activation]())
            if dropout > 0:
                self.layers.append(Dropout(dropout, self.dropout_rng))
        self.loss_layer: LossLayer = LOSSES[loss]()
        self.params: list[Parameter] = [p for layer in self.layers for p in layer.params]
        self.flat_params = _pack(self.params, self.dtype)
        self._weights = next((g for g in self.flat_params if g.decay), None)

    def forward(self, x: Array, train: bool = False) -> Array:
        """Scores (pre-softmax) for a batch."""
        for layer in self.layers:
            x = layer.forward(x, train)
        return x

    def predict(self, x: Array) -> Array:
        """Scores in evaluation mode (batch norm uses running statistics, no dropout).

        See :meth:`predict_proba` for probabilities and :meth:`predict_classes` for labels.
        """
        return self.forward(x, train=False)

    def predict_proba(self, x: NDArray[Any], batch_size: int = 2048) -> Array:
        """Class probabilities in evaluation mode: the softmax of the scores.

        Both losses score a softmax of the network's output, so these are the probabilities the
        network was trained to produce.

        Args:
            x: Rows of features ``(n, input_size)``; converted to the network's dtype.
            batch_size: Rows per forward pass (bounds the memory of large inputs).

        Returns:
            An ``(n, output_size)`` array in the network's dtype whose rows sum to 1.
        """
        x = np.asarray(x, dtype=self.dtype)
        out = np.empty((x.shape[0], self.sizes[-1]), dtype=self.dtype)
        for start in range(0, x.shape[0], batch_size):
            out[start : start + batch_size] = softmax(self.forward(x[start : start + batch_size]))
        return out

    def predict_classes(self, x: NDArray[Any], batch_size: int = 2048) -> NDArray[np.intp]:
        """The most probable class of each row (evaluation mode), as indices ``0..output_size-1``.

        Args:
            x: Rows of features ``(n, input_size)``; converted to the network's dtype.
            batch_size: Rows per forward pass.
        """
        x = np.asarray(x, dtype=self.dtype)
        out = np.empty(x.shape[0], dtype=np.intp)
        for start in range(0, x.shape[0], batch_size):
            out[start : start + batch_size] = self.forward(x[start : start + batch_size]).argmax(axis=1)
        return out

    def decay_loss(self) -> float:
        """The L2 penalty ``lambda/2 * sum(W**2)`` over all weight matrices."""
        if self.weight_decay == 0 or self._weights is None:
            return 0.0
        w = self._weights.data
        return 0.5 * self.weight_decay * float(np.vdot(w, w))

    def loss(self, x: Array, t: NDArray[np.generic], train: bool = False) -> float:
        """The total loss (data loss plus L2 penalty) of one forward pass, with no backward."""
        return self.loss_layer.value(self.forward(x, train), t) + self.decay_loss()

    @property
    def deterministic(self) -> bool:
        """Whether a training-mode forward pass equals an evaluation pass (no dropout, no batch norm)."""
        return not any(isinstance(layer, BatchNorm | Dropout) for layer in self.layers)

    def loss_and_grad(self, x: Array, t: NDArray[np.generic], scores: Array | None = None) -> float:
        """One training forward and backward pass.

        Leaves dL/dp in ``p.grad`` for every parameter and returns the total loss of that same
        forward pass (so a step never runs the network twice).

        Args:
            x: The batch.
            t: Its labels.
            scores: ``self.forward(x, train=True)`` if the caller already ran it with the current
                parameters (the layers still hold its caches); the forward pass is then skipped.
        """
        if scores is None:
            scores = self.forward(x, train=True)
        loss = self.loss_layer.forward(scores, t) + self.decay_loss()
        dout = self.loss_layer.backward()
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        if self.weight_decay and self._weights is not None:
            self._weights.grad += self.dtype.type(self.weight_decay) * self._weights.data
        return loss

    def evaluate(
        self, x: Array, t: NDArray[np.generic], batch_size: int = 2048, *, with_loss: bool = True
    ) -> tuple[float, float]:
        """Mean data loss and accuracy over a dataset, from one evaluation pass.

        The loss excludes the L2 penalty so that it is comparable across weight decays; with
        ``with_loss=False`` it is not computed and returned as NaN.
        """
        n = x.shape[0]
        if n == 0:
            return float("nan"), float("nan")
        labels = t.argmax(axis=1) if t.ndim == 2 else t
        total_loss = 0.0 if with_loss else float("nan")
        correct = 0
        for start in range(0, n, batch_size):
            xb, tb = x[start : start + batch_size], labels[start : start + batch_size]
            scores = self.forward(xb, train=False)
            if with_loss:
                total_loss += self.loss_layer.value(scores, tb) * xb.shape[0]
            correct += int(np.count_nonzero(scores.argmax(axis=1) == tb))
        return total_loss / n, correct / n

    def count_correct(self, x: Array, t: NDArray[np.generic], batch_size: int = 2048) -> int:
        """Number of rows whose highest score is the true class (one evaluation pass)."""
        labels = t.argmax(axis=1) if t.ndim == 2 else t
        correct = 0
        for start in range(0, x.shape[0], batch_size):
            scores = self.forward(x[start : start + batch_size], train=False)
            correct += int(np.count_nonzero(scores.argmax(axis=1) == labels[start : start + batch_size]))
        return correct

    def accuracy(self, x: Array, t: NDArray[np.generic], batch_size: int = 2048) -> float:
        """Fraction of rows whose highest score is the true class."""
        return self.evaluate(x, t, batch_size)[1]

    @property
    def architecture(self) -> dict[str, Any]:
        """The constructor's arguments but ``rng``, as JSON-ready data.

        ``MultiLayerNet(**net.architecture)`` builds a network of the same architecture (with
        other initial weights); checkpoints record it to rebuild the network they were taken of.
        """
        return {
            "input_size": self.sizes[0],
            "hidden_sizes": self.sizes[1:-1],
            "output_size": self.sizes[-1],
            **self._config,
            "weight_decay": self.weight_decay,
            "dtype": self.dtype.name,
        }

    def _state_arrays(self) -> dict[str, Array]:
        """The network's own arrays behind :meth:`state`, by the names it gives them."""
        out = {p.name: p.data for p in self.params}
        for layer in self.layers:
            if isinstance(layer, BatchNorm):
                out[f"running_mean{layer.name}"] = layer.running_mean
                out[f"running_var{layer.name}"] = layer.running_var
        return out

    def state(self) -> dict[str, Array]:
        """A copy of every parameter and running statistic, by name (for saving a model).

        Names are those of the parameters (``W1``, ``b1``, ``gamma1``, ``beta1``, ...) and of the
        batch-norm running statistics (``running_mean1``, ``running_var1``, ...); the shapes
        follow from the architecture alone (see :func:`state_shapes`).
        """
        return {name: a.copy() for name, a in self._state_arrays().items()}

    def load_state(self, state: Mapping[str, NDArray[Any]]) -> None:
        """Overwrite every parameter and running statistic with the arrays of ``state``.

        The inverse of :meth:`state`. The arrays are copied in place, so the flat parameter
        buffers and an optimizer's references to them stay valid.

        Args:
            state: One array per name of :meth:`state`, of the same shape and dtype.

        Raises:
            CheckpointError: A name is missing or extra, or an array has another shape or dtype;
                the network is then unchanged.
        """
        targets = self._state_arrays()
        missing, extra = sorted(targets.keys() - state.keys()), sorted(state.keys() - targets.keys())
        if missing or extra:
            raise CheckpointError(f"network state does not fit: missing {missing}, unexpected {extra}")
        for name, target in targets.items():
            value = state[name]
            if value.shape != target.shape or value.dtype != target.dtype:
                raise CheckpointError(
                    f"network state {name} is {value.dtype}{list(value.shape)}, "
                    f"expected {target.dtype}{list(target.shape)}"
                )
        for name, target in targets.items():
            target[...] = state[name]

    def set_dropout_rng(self, rng: np.random.Generator) -> None:
        """Draw the dropout masks from ``rng`` from now on (every dropout layer shares it)."""
        self.dropout_rng = rng
        for layer in self.layers:
            if isinstance(layer, Dropout):
                layer.rng = rng

    def named_parameters(self) -> dict[str, Parameter]:
        """Every parameter an optimizer may step, by name: the layers' (``W1``, ``b1``, ...) and the
        two flat ones that alias them (``weights``, ``others``, see :attr:`flat_params`)."""
        return {p.name: p for p in (*self.flat_params, *self.params)}

    @property
    def num_params(self) -> int:
        """Number of trainable scalars."""
        return sum(p.data.size for p in self.params)


def state_shapes(
    sizes: Sequence[int], *, batchnorm: bool
) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]:
    """The shapes a network of layer ``sizes`` has, without building it.

    Args:
        sizes: ``[input_size, *hidden_sizes, output_size]``.
        batchnorm: Whether hidden layers have batch normalization.

    Returns:
        The shapes of :meth:`MultiLayerNet.state`'s arrays, and those of
        :meth:`MultiLayerNet.named_parameters`, both by name.
    """
    state: dict[str, tuple[int, ...]] = {}
    weights = others = 0
    last = len(sizes) - 1
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes), start=1):
        state[f"W{i}"], state[f"b{i}"] = (fan_in, fan_out), (fan_out,)
        weights += fan_in * fan_out
        others += fan_out
        if batchnorm and i < last:
            for name in ("gamma", "beta", "running_mean", "running_var"):
                state[f"{name}{i}"] = (fan_out,)
            others += 2 * fan_out
    params = {name: shape for name, shape in state.items() if not name.startswith("running_")}
    return state, {"weights": (weights,), "others": (others,), **params}


def _pack(params: Sequence[Parameter], dtype: np.dtype[np.floating]) -> tuple[Parameter, ...]:
    """Move ``params`` into flat buffers (decayed ones first) and rebind each to views of them.

    Returns one flat :class:`Parameter` per non-empty group; its ``data`` and ``grad`` alias the
    members' arrays, so writes through either are seen by both.
    """
    groups = []
    for name, decay in (("weights", True), ("others", False)):
        members = [p for p in params if p.decay is decay]
        if not members:
            continue
        total = sum(p.data.size for p in members)
        flat = Parameter(name, np.empty(total, dtype=dtype), decay=decay)
        offset = 0
        for p in members:
            size, shape = p.data.size, p.data.shape
            view = flat.data[offset : offset + size].reshape(shape)
            view[...] = p.data
            p.data = view
            p.grad = flat.grad[offset : offset + size].reshape(shape)
            offset += size
        groups.append(flat)
    return tuple(groups)


def _split_rng(rng: np.random.Generator | int | None) -> tuple[np.random.Generator, np.random.Generator]:
    """Two independent generators (weights, dropout) derived from one seed or generator."""
    if isinstance(rng, np.random.Generator):
        children = rng.spawn(2)
    else:
        children = [np.random.default_rng(s) for s in np.random.SeedSequence(rng).spawn(2)]
    return children[0], children[1]
