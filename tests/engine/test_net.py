"""The whole network against central differences, and its configuration."""

from __future__ import annotations

import numpy as np
import pytest

import engine
from engine import ConfigError, Dropout, MultiLayerNet, numerical_gradient, relative_error


def _net(**kwargs: object) -> MultiLayerNet:
    defaults: dict[str, object] = {"dtype": np.float64, "rng": 0}
    defaults.update(kwargs)
    return MultiLayerNet(6, [5, 4], 3, **defaults)  # type: ignore[arg-type]


def _fixed_masks(net: MultiLayerNet) -> None:
    for layer in net.layers:
        if isinstance(layer, Dropout):
            layer.rng = np.random.default_rng(123)


@pytest.mark.parametrize(
    "config",
    [
        {"activation": "relu"},
        {"activation": "sigmoid", "weight_init": "xavier"},
        {"activation": "tanh", "weight_init": "std", "init_std": 0.5},
        {"activation": "relu", "weight_decay": 0.1},
        {"activation": "tanh", "batchnorm": True},
        {"activation": "sigmoid", "dropout": 0.3},
        {"activation": "tanh", "batchnorm": True, "dropout": 0.2, "weight_decay": 0.05},
        {"activation": "tanh", "loss": "squared_error", "weight_decay": 0.01},
    ],
)
def test_whole_net_gradients_match_numerical(config: dict[str, object]) -> None:
    net = _net(**config)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((7, 6))
    t = rng.integers(0, 3, 7)

    def f() -> float:
        _fixed_masks(net)
        return net.loss(x, t, train=True)

    _fixed_masks(net)
    loss = net.loss_and_grad(x, t)
    assert loss == pytest.approx(f(), rel=1e-12)  # the step's loss is the loss of its own pass
    for p in net.params:
        analytic = p.grad.copy()
        numeric = numerical_gradient(f, p.data)
        last_bias = f"b{len(net.sizes) - 1}"
        if config.get("batchnorm") and p.name[0] == "b" and p.name[1:].isdigit() and p.name != last_bias:
            # A bias right before batch norm is subtracted out again: its gradient is exactly 0.
            assert np.abs(analytic).max() < 1e-12 and np.abs(numeric).max() < 1e-8, p.name
            continue
        err = relative_error(analytic, numeric)
        assert err < 1e-6, (p.name, err)


def test_flat_params_alias_layer_params() -> None:
    net = _net(batchnorm=True, weight_decay=0.1)
    weights, others = net.flat_params
    assert weights.decay and not others.decay
    assert weights.data.size == sum(p.data.size for p in net.params if p.decay)
    assert weights.data.size + others.data.size == net.num_params
    net.params[0].data[0, 0] = 42.0
    assert weights.data[0] == 42.0
    weights.data[:] = 0
    assert all(not p.data.any() for p in net.params if p.decay)
    rng = np.random.default_rng(0)
    net.loss_and_grad(rng.standard_normal((4, 6)), np.array([0, 1, 2, 0]))
    np.testing.assert_array_equal(others.grad[: net.params[1].grad.size], net.params[1].grad)


def test_weight_decay_adds_l2_penalty_to_loss() -> None:
    x = np.random.default_rng(0).standard_normal((4, 6))
    t = np.array([0, 1, 2, 1])
    plain, decayed = _net(), _net(weight_decay=0.3)
    l2 = sum(float(np.sum(p.data**2)) for p in plain.params if p.name.startswith("W"))
    assert decayed.loss(x, t) == pytest.approx(plain.loss(x, t) + 0.15 * l2, rel=1e-12)
    # evaluation reports the data loss only, comparable across decays
    assert decayed.evaluate(x, t)[0] == pytest.approx(plain.evaluate(x, t)[0], rel=1e-12)


@pytest.mark.parametrize(
    ("init", "expected"), [("std", 0.01), ("xavier", np.sqrt(1 / 784)), ("he", np.sqrt(2 / 784))]
)
def test_weight_init_scales(init: str, expected: float) -> None:
    net = MultiLayerNet(784, [300], 10, weight_init=init, rng=0)
    assert float(np.std(net.params[0].data)) == pytest.approx(expected, rel=0.02)
    assert not net.params[1].data.any()  # biases start at zero


def test_float32_by_default_and_float64_on_request() -> None:
    net = MultiLayerNet(4, [3], 2, rng=0)
    assert {p.data.dtype for p in net.params} == {np.dtype(np.float32)}
    assert {p.grad.dtype for p in net.params} == {np.dtype(np.float32)}
    assert net.predict(np.ones((2, 4), np.float32)).dtype == np.float32
    assert {p.data.dtype for p in _net().params} == {np.dtype(np.float64)}


def test_same_seed_same_weights_other_seed_other_weights() -> None:
    a, b, c = _net(rng=5), _net(rng=5), _net(rng=6)
    for pa, pb in zip(a.params, b.params, strict=True):
        np.testing.assert_array_equal(pa.data, pb.data)
    assert not np.array_equal(a.params[0].data, c.params[0].data)


def test_dropout_does_not_change_initial_weights() -> None:
    np.testing.assert_array_equal(_net(rng=5).params[0].data, _net(rng=5, dropout=0.5).params[0].data)


def test_evaluate_matches_manual_accuracy() -> None:
    net = _net()
    rng = np.random.default_rng(3)
    x = rng.standard_normal((50, 6))
    t = rng.integers(0, 3, 50)
    expected = float(np.mean(net.predict(x).argmax(axis=1) == t))
    assert net.evaluate(x, t, batch_size=7)[1] == pytest.approx(expected)
    assert net.count_correct(x, t, batch_size=7) == round(expected * 50)
    loss_small_batches = net.evaluate(x, t, batch_size=7)[0]
    assert loss_small_batches == pytest.approx(net.evaluate(x, t, batch_size=1000)[0], rel=1e-12)


def test_deterministic_flag() -> None:
    assert _net().deterministic
    assert not _net(batchnorm=True).deterministic
    assert not _net(dropout=0.1).deterministic


def test_state_copies_parameters_and_running_stats() -> None:
    net = _net(batchnorm=True)
    state = net.state()
    assert {"W1", "b1", "gamma1", "beta1", "W3"} <= set(state)
    assert any(k.startswith("running_mean") for k in state)
    state["W1"][:] = 0
    assert net.params[0].data.any()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"activation": "gelu"}, "activation"),
        ({"weight_init": "lecun"}, "weight_init"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"weight_decay": -1.0}, "weight_decay"),
        ({"weight_decay": float("nan")}, "weight_decay"),
        ({"loss": "hinge"}, "loss"),
        ({"dtype": np.int32}, "dtype"),
        ({"weight_init": "std", "init_std": 0.0}, "init_std"),
    ],
)
def test_bad_configuration_is_a_config_error(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _net(**kwargs)


def test_zero_width_layer_rejected() -> None:
    with pytest.raises(ConfigError, match="sizes"):
        MultiLayerNet(4, [0], 2)


@pytest.mark.parametrize("optimizer", sorted(engine.OPTIMIZERS))
@pytest.mark.parametrize(("hidden", "batchnorm", "batch"), [([64, 64], False, 50), ([256], True, 3000)])
def test_estimate_memory_is_a_lower_bound_of_the_peak(
    optimizer: str, hidden: list[int], batchnorm: bool, batch: int
) -> None:
    """A network refused by the estimate could not have been trained: it never exceeds the peak."""
    import tracemalloc

    rng = np.random.default_rng(0)
    x, t = rng.random((3500, 64), dtype=np.float32), rng.integers(0, 10, 3500)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        net = engine.MultiLayerNet(64, hidden, 10, batchnorm=batchnorm, rng=0)
        opt = engine.make_optimizer(optimizer, 0.01)
        engine.Trainer(
            net, opt, x[:3000], t[:3000], x[3000:], t[3000:], epochs=1, batch_size=batch, rng=0
        ).fit()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    estimate = engine.estimate_memory(
        64, hidden, 10, batch_size=batch, optimizer=optimizer, batchnorm=batchnorm
    )
    assert 0.2 * peak < estimate <= peak


def test_estimate_memory_of_a_network_that_cannot_fit() -> None:
    assert engine.estimate_memory(784, [65536] * 64, 10, batch_size=100) > 10**12
    assert engine.estimate_memory(
        784, [100], 10, batch_size=100, dtype=np.float64
    ) == 2 * engine.estimate_memory(784, [100], 10, batch_size=100)
    with pytest.raises(engine.ConfigError, match="optimizer"):
        engine.estimate_memory(784, [100], 10, batch_size=100, optimizer="lbfgs")
