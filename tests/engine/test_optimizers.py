"""Contract tests run over every optimizer, plus each one's update rule on known values."""

from __future__ import annotations

import numpy as np
import pytest

from engine import (
    OPTIMIZERS,
    SGD,
    Adam,
    ConfigError,
    Momentum,
    MultiLayerNet,
    Optimizer,
    Parameter,
    make_optimizer,
)

# A learning rate that suits each optimizer on the small problems below.
LR = {"sgd": 0.1, "momentum": 0.05, "nesterov": 0.05, "adagrad": 0.1, "rmsprop": 0.01, "adam": 0.01}
ALL = sorted(OPTIMIZERS)


def _problem() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 8)).astype(np.float32)
    t = (x[:, :3].sum(axis=1) > 0).astype(np.int64) + (x[:, 3] > 1).astype(np.int64)
    return x, t


@pytest.mark.parametrize("name", ALL)
def test_reduces_loss_on_a_small_network(name: str) -> None:
    x, t = _problem()
    net = MultiLayerNet(8, [16], 3, rng=0)
    opt = make_optimizer(name, LR[name])
    first = net.loss(x, t)
    for _ in range(100):
        net.loss_and_grad(x, t)
        opt.update(net.params)
    assert net.loss(x, t) < 0.6 * first


@pytest.mark.parametrize("name", ALL)
def test_never_modifies_gradients_and_keeps_dtype(name: str) -> None:
    p = Parameter("w", np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4))
    p.grad[...] = np.linspace(2, -2, 12, dtype=np.float32).reshape(3, 4)
    grad_before = p.grad.copy()
    opt = make_optimizer(name, 0.01)
    for _ in range(3):
        opt.update([p])
    np.testing.assert_array_equal(p.grad, grad_before)
    assert p.data.dtype == np.float32
    for value in opt.state.values():
        for arr in value if isinstance(value, tuple) else (value,):
            assert arr.dtype == np.float32


@pytest.mark.parametrize("name", ALL)
def test_state_is_keyed_by_parameter_object(name: str) -> None:
    a = Parameter("w", np.ones(3, np.float32))
    b = Parameter("w", np.ones(3, np.float32))  # same name and value, different parameter
    a.grad[:] = 1.0
    b.grad[:] = -1.0
    opt = make_optimizer(name, 0.1)
    opt.update([a, b])
    opt.update([a, b])
    assert set(opt.state) <= {a, b}
    assert a.data[0] < 1.0 < b.data[0]  # each moved by its own gradient and its own state


@pytest.mark.parametrize("name", ALL)
def test_flat_update_equals_per_layer_update(name: str) -> None:
    """Stepping a network's two flat parameters is the same update as stepping each layer's."""
    x, t = _problem()
    nets = [MultiLayerNet(8, [16, 16], 3, weight_decay=0.01, rng=0) for _ in range(2)]
    opts = [make_optimizer(name, LR[name]) for _ in range(2)]
    for _ in range(5):
        for net, opt, params in zip(nets, opts, (nets[0].params, nets[1].flat_params), strict=True):
            net.loss_and_grad(x, t)
            opt.update(params)
    for pa, pb in zip(nets[0].params, nets[1].params, strict=True):
        np.testing.assert_array_equal(pa.data, pb.data)


def test_sgd_rule() -> None:
    p = Parameter("w", np.array([1.0, 2.0]))
    p.grad[:] = [0.5, -1.0]
    SGD(0.1).update([p])
    np.testing.assert_allclose(p.data, [0.95, 2.1])


def test_momentum_rule() -> None:
    p = Parameter("w", np.array([0.0]))
    p.grad[:] = [1.0]
    opt = Momentum(0.1, momentum=0.9)
    opt.update([p])  # v = -0.1
    opt.update([p])  # v = -0.09 - 0.1
    np.testing.assert_allclose(p.data, [-0.1 - 0.19])


def test_nesterov_rule() -> None:
    p = Parameter("w", np.array([0.0]))
    p.grad[:] = [1.0]
    opt = make_optimizer("nesterov", 0.1, momentum=0.9)
    opt.update([p])  # v = -0.1; p += 0.9*v - 0.1
    np.testing.assert_allclose(p.data, [-0.19])


def test_adagrad_and_rmsprop_rules() -> None:
    for name, expected in (("adagrad", -0.1), ("rmsprop", -0.1 * 2 / np.sqrt(0.01 * 4))):
        p = Parameter("w", np.array([0.0]))
        p.grad[:] = [2.0]
        make_optimizer(name, 0.1).update([p])
        np.testing.assert_allclose(p.data, [expected], rtol=1e-5)


def test_adam_first_step_is_lr_times_sign() -> None:
    p = Parameter("w", np.array([0.0, 0.0]))
    p.grad[:] = [3.0, -0.1]
    Adam(0.01).update([p])
    np.testing.assert_allclose(p.data, [-0.01, 0.01], rtol=1e-4)


@pytest.mark.parametrize(
    ("name", "lr", "options", "message"),
    [
        ("sgd", 0.0, {}, "lr"),
        ("sgd", float("nan"), {}, "lr"),
        ("sgd", -1.0, {}, "lr"),
        ("momentum", 0.1, {"momentum": 1.0}, "momentum"),
        ("adam", 0.1, {"beta2": 1.5}, "beta2"),
        ("rmsprop", 0.1, {"decay_rate": -0.1}, "decay_rate"),
        ("adagrad", 0.1, {"eps": 0.0}, "eps"),
        ("lbfgs", 0.1, {}, "optimizer must be one of"),
        ("sgd", 0.1, {"momentum": 0.9}, "unexpected keyword"),
    ],
)
def test_bad_optimizer_configuration(name: str, lr: float, options: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_optimizer(name, lr, **options)


def test_registry_covers_the_books_optimizers() -> None:
    assert set(OPTIMIZERS) == {"sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"}
    assert all(issubclass(cls, Optimizer) for cls in OPTIMIZERS.values())
