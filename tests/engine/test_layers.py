"""Every layer's backward pass against central differences, in float64."""

from __future__ import annotations

import numpy as np
import pytest

from engine import (
    Affine,
    BatchNorm,
    Dropout,
    Layer,
    ReLU,
    Sigmoid,
    SoftmaxWithLoss,
    SquaredErrorLoss,
    Tanh,
    cross_entropy_error,
    numerical_gradient,
    relative_error,
    softmax,
    sum_squared_error,
)

TOL = 1e-6


def _away_from_kinks(x: np.ndarray) -> np.ndarray:
    """Push inputs away from 0, where ReLU's derivative jumps and central differences lie."""
    return np.where(np.abs(x) < 1e-2, np.sign(x + 1e-12) * 0.1, x)


def _check_layer(layer: Layer, x: np.ndarray, seed: int = 0) -> None:
    """Check dL/dx and dL/dparams for L = sum(w * layer(x)) with random weights w."""
    rng = np.random.default_rng(seed)
    out = layer.forward(x, train=True)
    w = rng.standard_normal(out.shape)

    def f() -> float:
        if isinstance(layer, Dropout):
            layer.rng = np.random.default_rng(seed)  # the same mask on every probe
        return float(np.sum(w * layer.forward(x, train=True)))

    if isinstance(layer, Dropout):
        layer.rng = np.random.default_rng(seed)
    layer.forward(x, train=True)
    w_in = w.copy()
    dx = layer.backward(w)
    np.testing.assert_array_equal(w, w_in, err_msg="backward modified its incoming gradient")
    if getattr(layer, "input_grad", True):
        assert relative_error(dx, numerical_gradient(f, x)) < TOL
    for p in layer.params:
        analytic = p.grad.copy()
        assert relative_error(analytic, numerical_gradient(f, p.data)) < TOL, p.name


@pytest.fixture
def x64() -> np.ndarray:
    return _away_from_kinks(np.random.default_rng(1).standard_normal((5, 4)))


def test_affine_gradients(x64: np.ndarray) -> None:
    rng = np.random.default_rng(2)
    _check_layer(Affine(rng.standard_normal((4, 3)), rng.standard_normal(3)), x64)


def test_affine_without_input_grad_still_gives_parameter_grads(x64: np.ndarray) -> None:
    rng = np.random.default_rng(2)
    layer = Affine(rng.standard_normal((4, 3)), rng.standard_normal(3), input_grad=False)
    _check_layer(layer, x64)


@pytest.mark.parametrize("cls", [ReLU, Sigmoid, Tanh])
def test_activation_gradients(cls: type[Layer], x64: np.ndarray) -> None:
    _check_layer(cls(), x64)


def test_batchnorm_gradients(x64: np.ndarray) -> None:
    layer = BatchNorm(4, np.float64)
    layer.gamma.data[:] = np.random.default_rng(3).uniform(0.5, 1.5, 4)
    layer.beta.data[:] = np.random.default_rng(4).standard_normal(4)
    _check_layer(layer, x64)


def test_dropout_gradients(x64: np.ndarray) -> None:
    _check_layer(Dropout(0.4, np.random.default_rng(0)), x64)


@pytest.mark.parametrize("cls", [SoftmaxWithLoss, SquaredErrorLoss])
def test_loss_gradients(cls: type) -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 4))
    t = rng.integers(0, 4, 6)
    layer = cls()
    layer.forward(x, t)
    dx = layer.backward()
    assert relative_error(dx, numerical_gradient(lambda: layer.value(x, t), x)) < TOL


def test_softmax_with_loss_matches_book_functions() -> None:
    rng = np.random.default_rng(6)
    x = rng.standard_normal((8, 5))
    t = rng.integers(0, 5, 8)
    assert SoftmaxWithLoss().value(x, t) == pytest.approx(cross_entropy_error(softmax(x), t), rel=1e-9)
    assert SquaredErrorLoss().value(x, t) == pytest.approx(sum_squared_error(softmax(x), t), rel=1e-12)
    onehot = np.eye(5)[t]
    assert SoftmaxWithLoss().value(x, onehot) == pytest.approx(SoftmaxWithLoss().value(x, t), rel=1e-12)


def test_softmax_with_loss_is_stable_for_huge_scores() -> None:
    x = np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 1e4]], dtype=np.float32)
    layer = SoftmaxWithLoss()
    loss = layer.forward(x, np.array([2, 0]))
    assert np.isfinite(loss) and loss == pytest.approx((2e4 + (1e4 + np.log(2))) / 2, rel=1e-5)
    assert np.all(np.isfinite(layer.backward()))


def test_sigmoid_does_not_overflow() -> None:
    with np.errstate(all="raise"):
        out = Sigmoid().forward(np.array([[-1e4, 0.0, 1e4]], dtype=np.float32))
    np.testing.assert_allclose(out, [[0.0, 0.5, 1.0]])


def test_batchnorm_modes() -> None:
    rng = np.random.default_rng(7)
    layer = BatchNorm(3, np.float64, momentum=0.0)
    x = rng.normal(5.0, 2.0, (200, 3))
    out = layer.forward(x, train=True)
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(out.std(axis=0), 1, atol=1e-3)
    # momentum 0: the running statistics are exactly this batch's
    np.testing.assert_allclose(layer.running_mean, x.mean(axis=0))
    np.testing.assert_allclose(layer.running_var, x.var(axis=0))
    np.testing.assert_allclose(layer.forward(x, train=False), out, atol=1e-4)
    # evaluation never changes the running statistics
    before = layer.running_mean.copy()
    layer.forward(x + 100, train=False)
    np.testing.assert_array_equal(layer.running_mean, before)


def test_dropout_modes() -> None:
    layer = Dropout(0.5, np.random.default_rng(0))
    x = np.ones((1000, 50), dtype=np.float32)
    out = layer.forward(x, train=True)
    assert out.dtype == np.float32
    assert 0.45 < np.mean(out == 0) < 0.55
    assert np.mean(out) == pytest.approx(1.0, abs=0.02)  # inverted dropout keeps the expectation
    assert layer.forward(x, train=False) is x


def test_layers_keep_float32() -> None:
    rng = np.random.default_rng(8)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    layers: list[Layer] = [
        Affine(rng.standard_normal((3, 3)).astype(np.float32), np.zeros(3, np.float32)),
        BatchNorm(3, np.float32),
        ReLU(),
        Sigmoid(),
        Tanh(),
        Dropout(0.3, rng),
    ]
    for layer in layers:
        out = layer.forward(x, train=True)
        assert out.dtype == np.float32, type(layer).__name__
        assert layer.backward(np.ones_like(out)).dtype == np.float32, type(layer).__name__
    loss = SoftmaxWithLoss()
    loss.forward(x, np.array([0, 1, 2, 0]))
    assert loss.backward().dtype == np.float32
