"""Gradient-descent optimizers.

Each optimizer has one method, :meth:`Optimizer.update`, that moves every parameter one step
against its gradient. Per-parameter state (velocities, moment estimates) lives in a dict keyed by
the :class:`~engine.Parameter` object itself. ``param.grad`` is only read, never modified, and all
arithmetic stays in the parameter's dtype.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from ._errors import ConfigError
from ._parameter import Parameter

__all__ = [
    "OPTIMIZERS",
    "SGD",
    "AdaGrad",
    "Adam",
    "Momentum",
    "Nesterov",
    "Optimizer",
    "RMSprop",
    "make_optimizer",
]

Array = NDArray[np.floating]


def _check_positive(name: str, value: float) -> float:
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be a finite number > 0, got {value}")
    return float(value)


def _check_fraction(name: str, value: float) -> float:
    if not (math.isfinite(value) and 0 <= value < 1):
        raise ConfigError(f"{name} must be in [0, 1), got {value}")
    return float(value)


class Optimizer(ABC):
    """Moves parameters against their gradients.

    Args:
        lr: Learning rate.

    Attributes:
        state_slots: Arrays of a parameter's size this optimizer keeps per parameter (for
            :func:`~engine.estimate_memory`, and the arrays a checkpoint holds per parameter).
        hyperparameter_names: The constructor's arguments, each also an attribute of the same
            name (see :meth:`hyperparameters`).
        counter_names: Integer attributes that change as it steps (Adam's step count), saved in
            checkpoints with the state arrays.
    """

    state_slots: ClassVar[int] = 0
    hyperparameter_names: ClassVar[tuple[str, ...]] = ("lr",)
    counter_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, lr: float) -> None:
        self.lr = _check_positive("lr", lr)
        self.state: dict[Parameter, Any] = {}

    @abstractmethod
    def update(self, params: Iterable[Parameter]) -> None:
        """Apply one step to every parameter, using ``param.grad``."""

    def hyperparameters(self) -> dict[str, float]:
        """The constructor's arguments: ``type(opt)(**opt.hyperparameters())`` is a fresh copy."""
        return {name: getattr(self, name) for name in self.hyperparameter_names}

    def export_state(self) -> tuple[dict[str, int], dict[Parameter, tuple[Array, ...]]]:
        """Copies of what the optimizer has learnt so far: its counters, and the
        :attr:`state_slots` arrays of each parameter it has stepped."""
        counters = {name: int(getattr(self, name)) for name in self.counter_names}
        slots = {p: tuple(a.copy() for a in self._slots(value)) for p, value in self.state.items()}
        return counters, slots

    def import_state(self, counters: Mapping[str, int], slots: Mapping[Parameter, Sequence[Array]]) -> None:
        """Replace the optimizer's counters and per-parameter state (the inverse of
        :meth:`export_state`); the arrays are copied, each into its parameter's dtype."""
        for name in self.counter_names:
            setattr(self, name, int(counters[name]))
        self.state = {
            p: self._unslots([np.array(a, dtype=p.data.dtype, order="C") for a in arrays])
            for p, arrays in slots.items()
        }

    @staticmethod
    def _slots(value: Any) -> tuple[Array, ...]:
        """A state entry as a tuple of arrays (entries are single arrays unless overridden)."""
        return (value,)

    @staticmethod
    def _unslots(arrays: list[Array]) -> Any:
        """The state entry of a parameter from its arrays (the inverse of :meth:`_slots`)."""
        return arrays[0]

    def _zeros(self, p: Parameter) -> Array:
        """This parameter's state buffer, created as zeros (in its dtype) on its first step."""
        buf = self.state.get(p)
        if buf is None:
            buf = self.state[p] = np.zeros_like(p.data)
        return buf


class SGD(Optimizer):
    """Plain stochastic gradient descent: ``p -= lr * g``."""

    def update(self, params: Iterable[Parameter]) -> None:
        for p in params:
            p.data -= p.data.dtype.type(self.lr) * p.grad


class Momentum(Optimizer):
    """Heavy-ball momentum: ``v = m*v - lr*g; p += v``."""

    state_slots = 1
    hyperparameter_names = ("lr", "momentum")

    def __init__(self, lr: float, momentum: float = 0.9) -> None:
        super().__init__(lr)
        self.momentum = _check_fraction("momentum", momentum)

    def update(self, params: Iterable[Parameter]) -> None:
        for p in params:
            v = self._zeros(p)
            dt = p.data.dtype.type
            v *= dt(self.momentum)
            v -= dt(self.lr) * p.grad
            p.data += v


class Nesterov(Momentum):
    """Nesterov's accelerated gradient, in the look-ahead-free form of Sutskever et al. (2013):
    ``v = m*v - lr*g; p += m*v - lr*g``.
    """

    def update(self, params: Iterable[Parameter]) -> None:
        for p in params:
            v = self._zeros(p)
            dt = p.data.dtype.type
            step = dt(self.lr) * p.grad
            v *= dt(self.momentum)
            v -= step
            p.data += dt(self.momentum) * v
            p.data -= step


class AdaGrad(Optimizer):
    """AdaGrad: ``h += g*g; p -= lr * g / (sqrt(h) + eps)``."""

    state_slots = 1
    hyperparameter_names = ("lr", "eps")

    def __init__(self, lr: float, eps: float = 1e-7) -> None:
        super().__init__(lr)
        self.eps = _check_positive("eps", eps)

    def update(self, params: Iterable[Parameter]) -> None:
        for p in params:
            h = self._zeros(p)
            dt = p.data.dtype.type
            h += p.grad * p.grad
            p.data -= dt(self.lr) * p.grad / (np.sqrt(h) + dt(self.eps))


class RMSprop(Optimizer):
    """RMSprop: ``h = rho*h + (1-rho)*g*g; p -= lr * g / (sqrt(h) + eps)``."""

    state_slots = 1
    hyperparameter_names = ("lr", "decay_rate", "eps")

    def __init__(self, lr: float, decay_rate: float = 0.99, eps: float = 1e-7) -> None:
        super().__init__(lr)
        self.decay_rate = _check_fraction("decay_rate", decay_rate)
        self.eps = _check_positive("eps", eps)

    def update(self, params: Iterable[Parameter]) -> None:
        for p in params:
            h = self._zeros(p)
            dt = p.data.dtype.type
            h *= dt(self.decay_rate)
            h += dt(1 - self.decay_rate) * p.grad * p.grad
            p.data -= dt(self.lr) * p.grad / (np.sqrt(h) + dt(self.eps))


class Adam(Optimizer):
    """Adam with bias correction (Kingma and Ba, 2015)."""

    state_slots = 2
    hyperparameter_names = ("lr", "beta1", "beta2", "eps")
    counter_names = ("t",)

    def __init__(self, lr: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> None:
        super().__init__(lr)
        self.beta1 = _check_fraction("beta1", beta1)
        self.beta2 = _check_fraction("beta2", beta2)
        self.eps = _check_positive("eps", eps)
        self.t = 0

    def update(self, params: Iterable[Parameter]) -> None:
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        # Bias correction folded into the step size: lr * sqrt(1 - b2^t) / (1 - b1^t).
        lr_t = self.lr * math.sqrt(1 - b2**self.t) / (1 - b1**self.t)
        for p in params:
            state = self.state.get(p)
            if state is None:
                state = self.state[p] = (np.zeros_like(p.data), np.zeros_like(p.data))
            m, v = state  # first and second moment estimates
            dt = p.data.dtype.type
            g = p.grad
            m += dt(1 - b1) * (g - m)
            v += dt(1 - b2) * (g * g - v)
            p.data -= dt(lr_t) * m / (np.sqrt(v) + dt(self.eps))

    @staticmethod
    def _slots(value: Any) -> tuple[Array, ...]:
        return tuple(value)  # (m, v)

    @staticmethod
    def _unslots(arrays: list[Array]) -> Any:
        return (arrays[0], arrays[1])


OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": SGD,
    "momentum": Momentum,
    "nesterov": Nesterov,
    "adagrad": AdaGrad,
    "rmsprop": RMSprop,
    "adam": Adam,
}


def make_optimizer(name: str, lr: float, **options: float) -> Optimizer:
    """Build an optimizer by its lower-case name (``sgd``, ``momentum``, ``nesterov``, ``adagrad``,
    ``rmsprop``, ``adam``) with its options (e.g. ``momentum=0.9``).

    Raises:
        ConfigError: unknown name or option, or an out-of-range value.
    """
    cls = OPTIMIZERS.get(name.lower())
    if cls is None:
        raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")
    try:
        return cls(lr, **options)
    except TypeError as exc:
        raise ConfigError(f"optimizer {name!r}: {exc}") from None
