"""The training loop: curves, determinism, outcomes, callbacks, time limits."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from engine import ConfigError, EpochRecord, MultiLayerNet, Outcome, Trainer, load_dataset, make_optimizer


@pytest.fixture(scope="module")
def digits():  # type: ignore[no-untyped-def]
    return load_dataset("digits", subset=600, val_fraction=0.25, test_fraction=0.2, seed=0)


def _trainer(data, *, seed: int = 0, lr: float = 0.01, optimizer: str = "adam", net_kwargs=None, **kwargs):  # type: ignore[no-untyped-def]
    net = MultiLayerNet(data.input_size, [32, 32], data.num_classes, rng=seed, **(net_kwargs or {}))
    kwargs.setdefault("epochs", 5)
    kwargs.setdefault("batch_size", 50)
    return Trainer(
        net,
        make_optimizer(optimizer, lr),
        data.train.x,
        data.train.t,
        data.val.x,
        data.val.t,
        rng=seed,
        **kwargs,
    )


def _curves(history: list[EpochRecord]) -> list[tuple[object, ...]]:
    return [dataclasses.astuple(r)[:-1] for r in history]  # everything but wall time


def test_learns_digits(digits) -> None:  # type: ignore[no-untyped-def]
    result = _trainer(digits, epochs=15).fit()
    assert result.outcome is Outcome.COMPLETED
    assert len(result.history) == 15
    assert result.steps == 15 * int(np.ceil(digits.train.x.shape[0] / 50))
    assert result.final_val_acc is not None and result.final_val_acc > 0.85
    assert result.history[-1].train_loss < result.history[0].train_loss
    assert result.best_val_acc == max(r.val_acc for r in result.history if r.val_acc is not None)


@pytest.mark.parametrize("net_kwargs", [{}, {"batchnorm": True}, {"dropout": 0.3}])
def test_same_seed_gives_bit_identical_curves(digits, net_kwargs) -> None:  # type: ignore[no-untyped-def]
    a = _trainer(digits, seed=3, net_kwargs=net_kwargs).fit()
    b = _trainer(digits, seed=3, net_kwargs=net_kwargs).fit()
    c = _trainer(digits, seed=4, net_kwargs=net_kwargs).fit()
    assert _curves(a.history) == _curves(b.history)
    assert _curves(a.history) != _curves(c.history)


@pytest.mark.parametrize("n_train", [None, 130])  # 130: a ragged last batch
def test_shared_first_forward_pass_changes_no_number(digits, n_train) -> None:  # type: ignore[no-untyped-def]
    """The evaluation that shares its pass with the next step gives exactly the plain curves."""
    if n_train is not None:
        train = dataclasses.replace(digits.train, x=digits.train.x[:n_train], t=digits.train.t[:n_train])
        digits = dataclasses.replace(digits, train=train)
    shared = _trainer(digits, optimizer="sgd", lr=0.1, epochs=6)
    plain = _trainer(digits, optimizer="sgd", lr=0.1, epochs=6)
    assert shared.reuse_forward
    plain.reuse_forward = False
    a, b = shared.fit(), plain.fit()
    assert _curves(a.history) == _curves(b.history)
    for pa, pb in zip(shared.net.params, plain.net.params, strict=True):
        np.testing.assert_array_equal(pa.data, pb.data)


def test_train_accuracy_is_a_full_evaluation_pass(digits) -> None:  # type: ignore[no-untyped-def]
    trainer = _trainer(digits, epochs=1)
    result = trainer.fit()
    assert result.history[0].train_acc == trainer.net.accuracy(trainer.x_train, trainer.t_train)
    assert result.history[0].val_acc == trainer.net.accuracy(trainer.x_val, trainer.t_val)


def test_divergence_is_a_typed_outcome_not_a_crash(digits) -> None:  # type: ignore[no-untyped-def]
    result = _trainer(digits, optimizer="sgd", lr=1e10, epochs=5).fit()
    assert result.outcome is Outcome.DIVERGED
    assert result.reason and "non-finite" in result.reason
    assert result.final_val_acc is None
    for record in result.history:
        assert all(np.isfinite(v) for v in (record.train_loss, record.val_loss) if v is not None)


def test_callback_can_stop_training(digits) -> None:  # type: ignore[no-untyped-def]
    seen: list[int] = []

    def callback(record: EpochRecord) -> bool:
        seen.append(record.epoch)
        return record.epoch == 2

    result = _trainer(digits, epochs=10, callback=callback).fit()
    assert result.outcome is Outcome.STOPPED
    assert seen == [1, 2]
    assert len(result.history) == 2
    assert "epoch 2" in (result.reason or "")


def test_eval_interval_skips_epochs_but_always_evaluates_the_last(digits) -> None:  # type: ignore[no-untyped-def]
    result = _trainer(digits, epochs=7, eval_interval=3).fit()
    evaluated = [r.epoch for r in result.history if r.val_acc is not None]
    assert evaluated == [3, 6, 7]
    assert all(r.train_loss > 0 for r in result.history)


def test_time_limit(digits) -> None:  # type: ignore[no-untyped-def]
    result = _trainer(digits, epochs=10_000, time_limit=0.2).fit()
    assert result.outcome is Outcome.TIMED_OUT
    assert 0.2 <= result.seconds < 5
    assert "time limit" in (result.reason or "")


def test_float64_training_works(digits) -> None:  # type: ignore[no-untyped-def]
    result = _trainer(digits, net_kwargs={"dtype": np.float64}).fit()
    assert result.outcome is Outcome.COMPLETED


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"eval_interval": 0}, "eval_interval"),
        ({"time_limit": -1.0}, "time_limit"),
    ],
)
def test_bad_trainer_configuration(digits, kwargs, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=message):
        _trainer(digits, **kwargs)
