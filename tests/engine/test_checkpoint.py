"""Checkpoints: exact resumption of training runs, saved models, and bytes that never unpickle."""

from __future__ import annotations

import dataclasses
import io
import json
import pickle
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import engine
from engine import (
    FORMAT_VERSION,
    OPTIMIZERS,
    Checkpoint,
    CheckpointError,
    EngineError,
    EpochRecord,
    MultiLayerNet,
    Outcome,
    Trainer,
    TrainResult,
    load_dataset,
    load_model,
    make_optimizer,
    save_model,
    state_shapes,
)

EPOCHS = 5
LR = {"sgd": 0.1, "momentum": 0.05, "nesterov": 0.05, "adagrad": 0.05, "rmsprop": 0.003, "adam": 0.003}


@pytest.fixture(scope="module")
def digits():  # type: ignore[no-untyped-def]
    # 330 training rows: batches of 50 leave a ragged last one.
    return load_dataset("digits", subset=550, val_fraction=0.25, test_fraction=0.2, seed=0)


def _trainer(  # type: ignore[no-untyped-def]
    data,
    *,
    optimizer: str = "adam",
    seed: int = 0,
    dtype: Any = np.float32,
    net_kwargs: dict[str, Any] | None = None,
    callback: Callable[[EpochRecord], bool | None] | None = None,
    **kwargs: Any,
) -> Trainer:
    net_kwargs = {"batchnorm": True, "dropout": 0.2} if net_kwargs is None else net_kwargs
    net = MultiLayerNet(data.input_size, [24, 16], data.num_classes, dtype=dtype, rng=seed, **net_kwargs)
    kwargs.setdefault("epochs", EPOCHS)
    kwargs.setdefault("batch_size", 50)
    opt = make_optimizer(optimizer, LR[optimizer])
    return Trainer(
        net, opt, data.train.x, data.train.t, data.val.x, data.val.t, rng=seed, callback=callback, **kwargs
    )


def _curves(history: list[EpochRecord] | tuple[EpochRecord, ...]) -> list[tuple[object, ...]]:
    return [dataclasses.astuple(r)[:-1] for r in history]  # everything but wall time


def _assert_same_run(a: Trainer, ra: TrainResult, b: Trainer, rb: TrainResult) -> None:
    """Two runs ended identically: curves, steps, outcome, every array and generator."""
    assert (rb.outcome, rb.steps) == (ra.outcome, ra.steps)
    assert _curves(rb.history) == _curves(ra.history)
    sa, sb = a.net.state(), b.net.state()
    assert sa.keys() == sb.keys()
    for name in sa:
        np.testing.assert_array_equal(sb[name], sa[name], err_msg=name, strict=True)
    ca, cb = a.checkpoint(), b.checkpoint()
    assert ca.optimizer is not None and cb.optimizer is not None
    assert ca.optimizer.counters == cb.optimizer.counters
    assert ca.optimizer.slots.keys() == cb.optimizer.slots.keys()
    for name, arrays in ca.optimizer.slots.items():
        for x, y in zip(arrays, cb.optimizer.slots[name], strict=True):
            np.testing.assert_array_equal(y, x, strict=True)
    assert _rng_state(a.rng) == _rng_state(b.rng)
    assert _rng_state(a.net.dropout_rng) == _rng_state(b.net.dropout_rng)


def _rng_state(gen: np.random.Generator) -> str:
    return json.dumps(gen.bit_generator.state, default=lambda a: a.tolist())  # arrays: MT19937, Philox


def _checkpoints_of(make: Callable[..., Trainer]) -> tuple[Trainer, TrainResult, dict[int, bytes]]:
    """A run that writes a checkpoint's bytes before it starts, after every epoch and at its end."""
    saved: dict[int, bytes] = {}
    trainer = make(callback=lambda record: saved.__setitem__(record.epoch, trainer.checkpoint().to_bytes()))
    saved[0] = trainer.checkpoint().to_bytes()
    result = trainer.fit()
    assert _timeless(trainer.checkpoint().to_bytes()) == _timeless(saved[trainer.epochs])  # the last boundary
    return trainer, result, saved


def _timeless(data: bytes) -> bytes:
    """The checkpoint ``data`` with its seconds (the only wall-clock number) set to 0."""
    checkpoint = Checkpoint.from_bytes(data)
    assert checkpoint.trainer is not None
    position = dataclasses.replace(checkpoint.trainer, seconds=0.0)
    return dataclasses.replace(checkpoint, trainer=position).to_bytes()


# ---------------------------------------------------------------------------------------------
# Exact resumption


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_resuming_at_any_epoch_is_bit_identical_to_an_uninterrupted_run(digits, optimizer, dtype) -> None:  # type: ignore[no-untyped-def]
    """Batch norm and dropout on; the resuming trainer starts from other weights and seeds."""
    plain = _trainer(digits, optimizer=optimizer, dtype=dtype)
    expected = plain.fit()
    assert expected.outcome is Outcome.COMPLETED
    checkpointing, result, saved = _checkpoints_of(
        lambda **kw: _trainer(digits, optimizer=optimizer, dtype=dtype, **kw)
    )
    _assert_same_run(plain, expected, checkpointing, result)  # taking checkpoints changes nothing
    for k in (0, 1, 3, EPOCHS):
        checkpoint = Checkpoint.from_bytes(saved[k])
        assert checkpoint.epoch == k
        resumed = _trainer(digits, optimizer=optimizer, dtype=dtype, seed=99, resume_from=checkpoint)
        _assert_same_run(plain, expected, resumed, resumed.fit())


@pytest.mark.parametrize(
    ("net_kwargs", "kwargs"),
    [
        ({}, {}),  # deterministic: the first forward pass of each epoch is shared with the evaluation
        ({"batchnorm": True}, {"eval_interval": 2}),  # boundaries without an evaluation
        ({"dropout": 0.3, "activation": "tanh", "loss": "squared_error"}, {"eval_batch_size": 64}),
    ],
)
def test_resuming_other_networks_and_settings(digits, net_kwargs, kwargs) -> None:  # type: ignore[no-untyped-def]
    def make(**kw: Any) -> Trainer:
        return _trainer(digits, optimizer="momentum", net_kwargs=net_kwargs, **kwargs, **kw)

    plain = make()
    expected = plain.fit()
    _, _, saved = _checkpoints_of(make)
    for k in range(EPOCHS + 1):
        resumed = make(seed=7)
        resumed.resume(Checkpoint.from_bytes(saved[k]))
        _assert_same_run(plain, expected, resumed, resumed.fit())


def test_stop_then_resume_in_another_trainer(digits) -> None:  # type: ignore[no-untyped-def]
    """The preemption pattern: the callback saves and stops; a new trainer finishes the run."""
    plain = _trainer(digits)
    expected = plain.fit()
    saved: list[bytes] = []

    def stop_at_2(record: EpochRecord) -> bool:
        saved.append(first.checkpoint().to_bytes())
        return record.epoch == 2

    first = _trainer(digits, callback=stop_at_2)
    stopped = first.fit()
    assert stopped.outcome is Outcome.STOPPED
    assert _timeless(first.checkpoint().to_bytes()) == _timeless(saved[-1])
    second = _trainer(digits, seed=5, resume_from=Checkpoint.from_bytes(saved[-1]))
    result = second.fit()
    _assert_same_run(plain, expected, second, result)
    assert result.seconds >= second.checkpoint().trainer.seconds > 0  # type: ignore[union-attr]
    assert result.best_val_acc == expected.best_val_acc


def test_a_checkpoint_of_the_last_epoch_extends_the_run(digits) -> None:  # type: ignore[no-untyped-def]
    longer = _trainer(digits, epochs=EPOCHS + 3)
    expected = longer.fit()
    short = _trainer(digits)
    short.fit()
    extended = _trainer(digits, epochs=EPOCHS + 3, seed=3, resume_from=short.checkpoint())
    _assert_same_run(longer, expected, extended, extended.fit())


def test_checkpoints_are_snapshots(digits) -> None:  # type: ignore[no-untyped-def]
    trainer = _trainer(digits, epochs=2)
    taken: list[Checkpoint] = []
    trainer.callback = lambda record: taken.append(trainer.checkpoint())
    trainer.fit()
    first, last = taken
    assert first.to_bytes() != last.to_bytes()
    assert not np.array_equal(first.arrays["W1"], last.arrays["W1"])
    assert first.trainer is not None and last.trainer is not None
    assert (first.trainer.epoch, last.trainer.epoch) == (1, 2)
    assert first.trainer.next_order is not None and last.trainer.next_order is None  # last: not drawn


def test_fit_after_resume_then_fit_again_starts_afresh(digits) -> None:  # type: ignore[no-untyped-def]
    """resume() affects the next fit() only, as fit() always started at epoch 1 before."""
    source = _trainer(digits, epochs=2)
    source.fit()
    trainer = _trainer(digits, resume_from=source.checkpoint())
    assert trainer.checkpoint().epoch == 2  # before fit: the pending position
    assert [r.epoch for r in trainer.fit().history] == [1, 2, 3, 4, 5]
    assert [r.epoch for r in trainer.fit().history] == [1, 2, 3, 4, 5]


def test_other_bit_generators_are_restored(digits) -> None:  # type: ignore[no-untyped-def]
    def make(seed: int, **kw: Any) -> Trainer:
        data = digits
        net = MultiLayerNet(
            data.input_size,
            [16],
            data.num_classes,
            dropout=0.3,
            rng=np.random.Generator(np.random.MT19937(seed)),
        )
        return Trainer(
            net,
            make_optimizer("adam", 0.003),
            data.train.x,
            data.train.t,
            data.val.x,
            data.val.t,
            epochs=3,
            batch_size=50,
            rng=np.random.Generator(np.random.Philox(seed)),
            **kw,
        )

    plain = make(0)
    expected = plain.fit()
    _, _, saved = _checkpoints_of(lambda **kw: make(0, **kw))
    resumed = make(1)
    resumed.net.set_dropout_rng(np.random.default_rng(1))  # PCG64: replaced by an MT19937
    resumed.rng = np.random.default_rng(1)
    resumed.resume(Checkpoint.from_bytes(saved[1]))
    assert type(resumed.rng.bit_generator) is np.random.Philox
    assert all(layer.rng is resumed.net.dropout_rng for layer in resumed.net.layers if hasattr(layer, "rate"))
    _assert_same_run(plain, expected, resumed, resumed.fit())


def test_an_optimizer_of_the_layer_parameters_is_checkpointed_by_their_names() -> None:
    net = MultiLayerNet(5, [4], 3, batchnorm=True, rng=0)
    opt = make_optimizer("rmsprop", 0.01)
    x, t = np.random.default_rng(0).standard_normal((8, 5), dtype=np.float32), np.arange(8) % 3
    for _ in range(3):
        net.loss_and_grad(x, t)
        opt.update(net.params)
    from engine import OptimizerState

    state = OptimizerState.of(opt, net)
    assert sorted(state.slots) == sorted(p.name for p in net.params)
    checkpoint = dataclasses.replace(Checkpoint.of_network(net), optimizer=state)
    copy = Checkpoint.from_bytes(checkpoint.to_bytes())
    net2 = copy.build_network()
    opt2 = copy.build_optimizer(net2)
    for _ in range(2):
        for n, o, params in ((net, opt, net.params), (net2, opt2, net2.params)):
            n.loss_and_grad(x, t)
            o.update(params)
    for a, b in zip(net.params, net2.params, strict=True):
        np.testing.assert_array_equal(a.data, b.data)


# ---------------------------------------------------------------------------------------------
# Models


@pytest.mark.parametrize(
    ("net_kwargs", "dtype"), [({}, np.float32), ({"batchnorm": True, "dropout": 0.5}, np.float64)]
)
def test_a_saved_model_predicts_as_the_trained_network(digits, net_kwargs, dtype) -> None:  # type: ignore[no-untyped-def]
    trainer = _trainer(digits, epochs=3, net_kwargs=net_kwargs, dtype=dtype)
    trainer.fit()
    net = trainer.net
    loaded = load_model(save_model(net))
    assert loaded.architecture == net.architecture
    x = digits.test.x
    np.testing.assert_array_equal(loaded.predict(x), net.predict(x), strict=True)
    proba = loaded.predict_proba(x, batch_size=17)
    np.testing.assert_array_equal(proba, net.predict_proba(x, batch_size=17))
    # Other batch sizes may round differently in the BLAS, never by more than that.
    np.testing.assert_allclose(proba, net.predict_proba(x), rtol=1e-5 if dtype == np.float32 else 1e-12)
    assert proba.dtype == net.dtype and proba.shape == (x.shape[0], digits.num_classes)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    classes = loaded.predict_classes(x)
    np.testing.assert_array_equal(classes, net.predict(x).argmax(axis=1))
    assert float(np.mean(classes == digits.test.t)) == net.accuracy(x, digits.test.t)
    assert load_model(trainer.checkpoint().to_bytes()).architecture == net.architecture  # from a run too


def test_a_model_checkpoint_cannot_resume_a_run(digits) -> None:  # type: ignore[no-untyped-def]
    trainer = _trainer(digits)
    checkpoint = Checkpoint.from_bytes(save_model(trainer.net))
    assert checkpoint.optimizer is None and checkpoint.trainer is None and checkpoint.epoch is None
    with pytest.raises(CheckpointError, match="network alone"):
        trainer.resume(checkpoint)
    with pytest.raises(CheckpointError, match="network alone"):
        checkpoint.build_optimizer(trainer.net)


@pytest.mark.parametrize("sizes", [[3, 2], [7, 5, 4, 3], [1, 1, 1]])
@pytest.mark.parametrize("batchnorm", [False, True])
def test_state_shapes_are_the_networks(sizes, batchnorm) -> None:  # type: ignore[no-untyped-def]
    net = MultiLayerNet(sizes[0], sizes[1:-1], sizes[-1], batchnorm=batchnorm, rng=0)
    state, params = state_shapes(sizes, batchnorm=batchnorm)
    assert state == {k: v.shape for k, v in net.state().items()}
    assert params == {k: p.data.shape for k, p in net.named_parameters().items()}
    assert MultiLayerNet(**net.architecture).architecture == net.architecture


# ---------------------------------------------------------------------------------------------
# The bytes


def test_the_bytes_are_a_plain_npz_and_stable(digits) -> None:  # type: ignore[no-untyped-def]
    trainer = _trainer(digits, epochs=2)
    trainer.fit()
    data = trainer.checkpoint().to_bytes()
    assert data == trainer.checkpoint().to_bytes() == Checkpoint.from_bytes(data).to_bytes()  # after fit
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        header = json.loads(npz["header"].tobytes())
        assert header["format_version"] == FORMAT_VERSION
        assert header["engine_version"] == engine.__version__
        assert header["network"] == trainer.net.architecture
        steps = 2 * -(-trainer.x_train.shape[0] // 50)
        assert header["optimizer"]["kind"] == "adam" and header["optimizer"]["counters"] == {"t": steps}
        assert header["trainer"]["epoch"] == 2 and len(header["trainer"]["history"]) == 2
        w1 = trainer.net.params[0].data
        assert header["layout"]["weights"][0] == ["W1", list(w1.shape)]
        assert [name for name, _ in header["layout"]["others"]] == [
            "b1",
            "gamma1",
            "beta1",
            "b2",
            "gamma2",
            "beta2",
            "b3",
        ]
        np.testing.assert_array_equal(npz["net.weights"], trainer.net.flat_params[0].data)
        np.testing.assert_array_equal(npz["net.others"], trainer.net.flat_params[1].data)
        np.testing.assert_array_equal(npz["net.weights"][: w1.size].reshape(w1.shape), w1)
        assert npz["net.running"].size == 2 * (24 + 16)  # a mean and a variance per unit
        assert {"opt.weights.0", "opt.weights.1", "opt.others.0", "opt.others.1"} <= set(npz.files)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}


def _rewrite(
    data: bytes, edit: Callable[[dict[str, Any], dict[str, Any]], None], *, savez: Any = np.savez
) -> bytes:
    """The checkpoint ``data`` with its header and members edited, written back by ``savez``."""
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        members = {name: npz[name] for name in npz.files}
    header = json.loads(members.pop("header").tobytes())
    edit(header, members)
    buf = io.BytesIO()
    text = json.dumps(header).encode()
    savez(buf, header=np.frombuffer(text, dtype=np.uint8), **members)
    return buf.getvalue()


@pytest.fixture(scope="module")
def saved(digits) -> bytes:  # type: ignore[no-untyped-def]
    """The checkpoint of epoch 1 of 2 (with the next epoch's order already drawn)."""
    taken: list[bytes] = []
    trainer = _trainer(
        digits, epochs=2, callback=lambda record: taken.append(trainer.checkpoint().to_bytes())
    )
    trainer.fit()
    return taken[0]


def test_an_archive_written_by_np_savez_reads_back(saved) -> None:  # type: ignore[no-untyped-def]
    again = _rewrite(saved, lambda header, members: None)
    assert Checkpoint.from_bytes(again).to_bytes() == saved


class _Trap:
    """Unpickling one calls :func:`_sprung` (which must never happen)."""

    sprung = False

    def __reduce__(self) -> tuple[Any, ...]:
        return (_sprung, ())


def _sprung() -> None:
    _Trap.sprung = True


def _object_array() -> np.ndarray[Any, Any]:
    a = np.empty(1, dtype=object)
    a[0] = _Trap()
    return a


@pytest.mark.parametrize(
    "edit",
    [
        lambda header, members: members.update(extra=_object_array()),
        lambda header, members: members.update({"net.weights": _object_array()}),
        lambda header, members: members.update({"trainer.next_order": _object_array()}),
    ],
    ids=["extra member", "parameter", "order"],
)
def test_object_arrays_are_refused_unread(saved, edit) -> None:  # type: ignore[no-untyped-def]
    def savez_pickling(buf: io.BytesIO, **arrays: Any) -> None:
        with zipfile.ZipFile(buf, "w") as zf:
            for name, a in arrays.items():
                with zf.open(f"{name}.npy", "w") as f:
                    np.lib.format.write_array(f, a, allow_pickle=True)

    crafted = _rewrite(saved, edit, savez=savez_pickling)
    assert _Trap.sprung is False
    with pytest.raises(CheckpointError):
        Checkpoint.from_bytes(crafted)
    assert _Trap.sprung is False


def test_a_pickle_is_refused_unread() -> None:
    with pytest.raises(CheckpointError, match="not an engine checkpoint"):
        Checkpoint.from_bytes(pickle.dumps(_Trap()))
    with pytest.raises(CheckpointError):
        load_model(pickle.dumps({"W1": _Trap()}))
    assert _Trap.sprung is False


@pytest.mark.parametrize("version", [0, 2, "1", None, True])
def test_other_format_versions_are_refused(saved, version) -> None:  # type: ignore[no-untyped-def]
    crafted = _rewrite(saved, lambda header, members: header.update(format_version=version))
    with pytest.raises(CheckpointError, match="format version"):
        Checkpoint.from_bytes(crafted)


def test_truncated_bytes_are_refused(saved) -> None:  # type: ignore[no-untyped-def]
    for length in [0, 1, 30, *range(100, len(saved), max(1, len(saved) // 23)), len(saved) - 1]:
        with pytest.raises(CheckpointError):
            Checkpoint.from_bytes(saved[:length])


def test_corrupted_bytes_are_refused(saved) -> None:  # type: ignore[no-untyped-def]
    corrupted = bytearray(saved)
    corrupted[len(saved) // 2] ^= 0xFF  # inside an array: the member's CRC no longer matches
    with pytest.raises(CheckpointError):
        Checkpoint.from_bytes(corrupted)


def test_any_flipped_byte_is_refused_or_harmless(saved) -> None:  # type: ignore[no-untyped-def]
    """Flipping any one byte either raises CheckpointError or reads the same checkpoint back (a
    byte zip readers ignore, such as a local header's timestamp): never another exception."""
    positions = np.random.default_rng(0).choice(len(saved), size=300, replace=False)
    refused = 0
    for i in [*positions, *range(30), *range(len(saved) - 120, len(saved))]:
        flipped = bytearray(saved)
        flipped[i] ^= 0x5A
        try:
            checkpoint = Checkpoint.from_bytes(bytes(flipped))
        except CheckpointError:
            refused += 1
            continue
        assert _timeless(checkpoint.to_bytes()) == _timeless(saved), i
    assert refused > 300


def test_deeply_nested_json_is_refused(saved) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CheckpointError):
        Checkpoint.from_bytes(_rewrite(saved, lambda h, m: h.update(trainer=[[[[[[[[[[]]]]]]]]]] * 1)))
    buf = io.BytesIO()
    np.savez(buf, header=np.frombuffer(b"[" * 100_000 + b"]" * 100_000, dtype=np.uint8))
    with pytest.raises(CheckpointError):
        Checkpoint.from_bytes(buf.getvalue())


def _del(key: str) -> Callable[[dict[str, Any], dict[str, Any]], None]:
    return lambda header, members: members.pop(key)


@pytest.mark.parametrize(
    ("edit", "savez", "message"),
    [
        (lambda h, m: None, np.savez_compressed, "compressed"),
        (_del("net.weights"), np.savez, "missing"),
        (lambda h, m: m.update(extra=np.zeros(2)), np.savez, "unexpected"),
        (lambda h, m: m.update({"net.weights": m["net.weights"][:-1]}), np.savez, "net.weights"),
        (lambda h, m: m.update({"net.others": m["net.others"].astype(np.float64)}), np.savez, "net.others"),
        (lambda h, m: m.update({"net.running": m["net.running"].reshape(2, -1)}), np.savez, "net.running"),
        (lambda h, m: h["layout"]["weights"].reverse(), np.savez, "layout"),
        (lambda h, m: m.update({"trainer.next_order": m["trainer.next_order"] * 0}), np.savez, "permutation"),
        (
            lambda h, m: m.update({"trainer.next_order": m["trainer.next_order"].astype(float)}),
            np.savez,
            "integer",
        ),
        (lambda h, m: h.update(format="something else"), np.savez, "format"),
        (lambda h, m: h.update(surprise=1), np.savez, "fields"),
        (lambda h, m: h["network"].update(hidden_sizes=[24, 17]), np.savez, "layout"),
        (lambda h, m: h["network"].update(hidden_sizes=[24, "16"]), np.savez, "hidden_sizes"),
        (lambda h, m: h["network"].update(dtype="int32"), np.savez, "dtype"),
        (lambda h, m: h["network"].update(dtype="nonsense"), np.savez, "dtype"),
        (lambda h, m: h["network"].update(batchnorm=1), np.savez, "batchnorm"),
        (lambda h, m: h["network"].pop("loss"), np.savez, "fields"),
        (lambda h, m: h["optimizer"].update(kind="lbfgs"), np.savez, "lbfgs"),
        (lambda h, m: h["optimizer"].update(kind="sgd"), np.savez, "sgd"),
        (lambda h, m: h["optimizer"]["counters"].pop("t"), np.savez, "counter"),
        (lambda h, m: h["optimizer"]["hyperparameters"].update(lr="fast"), np.savez, "lr"),
        (lambda h, m: h["trainer"]["history"].pop(), np.savez, "records"),
        (lambda h, m: h["trainer"]["history"][0].update(epoch=2), np.savez, "epoch"),
        (lambda h, m: h["trainer"]["history"][0].update(val_acc="0.5"), np.savez, "val_acc"),
        (lambda h, m: h["trainer"].update(seconds=-1.0), np.savez, "seconds"),
        (
            lambda h, m: h["trainer"]["shuffle_rng"].update(bit_generator="os.system"),
            np.savez,
            "bit generator",
        ),
        (lambda h, m: h["trainer"]["shuffle_rng"]["state"].update(state="x"), np.savez, "state"),
        (lambda h, m: h["dropout_rng"].update(bit_generator="MT19937"), np.savez, "MT19937"),
        (lambda h, m: h["trainer"]["settings"].update(n_train=0), np.savez, "n_train"),
    ],
)
def test_malformed_checkpoints_are_refused(saved, edit, savez, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CheckpointError, match=message):
        Checkpoint.from_bytes(_rewrite(saved, edit, savez=savez))


@pytest.mark.parametrize(
    "data", [b"", b"PK\x05\x06" + bytes(18), b"\x93NUMPY garbage", b"hello world" * 50, bytes(1000)]
)
def test_foreign_bytes_are_refused(data) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CheckpointError):
        Checkpoint.from_bytes(data)


def test_a_foreign_npz_is_refused() -> None:
    buf = io.BytesIO()
    np.savez(buf, x=np.zeros((3, 4)), y=np.arange(3))
    with pytest.raises(CheckpointError, match="no header"):
        Checkpoint.from_bytes(buf.getvalue())


def test_not_bytes_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        Checkpoint.from_bytes("PK...")  # type: ignore[arg-type]
    assert issubclass(CheckpointError, EngineError)


# ---------------------------------------------------------------------------------------------
# Restoring into the wrong target


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"net_kwargs": {"batchnorm": True, "dropout": 0.1}}, "dropout"),
        ({"net_kwargs": {"batchnorm": False, "dropout": 0.2}}, "batchnorm"),
        ({"dtype": np.float64}, "dtype"),
        ({"optimizer": "sgd"}, "optimizer"),
        ({"batch_size": 40}, "batch_size"),
        ({"epochs": 1}, "past the trainer's 1 epochs"),
    ],
)
def test_a_checkpoint_of_another_run_is_refused_and_changes_nothing(digits, change, message) -> None:  # type: ignore[no-untyped-def]
    source = _trainer(digits, epochs=2)
    source.fit()
    trainer = _trainer(digits, seed=4, **change)
    before = trainer.checkpoint().to_bytes()
    with pytest.raises(CheckpointError, match=message):
        trainer.resume(source.checkpoint())
    assert trainer.checkpoint().to_bytes() == before


def test_other_hyperparameters_sizes_and_data_are_refused(digits, saved) -> None:  # type: ignore[no-untyped-def]
    checkpoint = Checkpoint.from_bytes(saved)
    trainer = _trainer(digits)
    trainer.optimizer = make_optimizer("adam", 0.01)
    with pytest.raises(CheckpointError, match="lr"):
        trainer.resume(checkpoint)
    net = MultiLayerNet(digits.input_size, [24, 15], digits.num_classes, batchnorm=True, dropout=0.2)
    with pytest.raises(CheckpointError, match="hidden_sizes"):
        checkpoint.restore_network(net)
    fewer = Trainer(
        trainer.net, make_optimizer("adam", LR["adam"]), digits.train.x[:-1], digits.train.t[:-1],
        digits.val.x, digits.val.t, epochs=EPOCHS, batch_size=50,
    )  # fmt: skip
    with pytest.raises(CheckpointError, match="n_train"):
        fewer.resume(checkpoint)
    with pytest.raises(CheckpointError, match="Custom"):

        class Custom(engine.SGD):
            pass

        Trainer(
            trainer.net, Custom(0.1), digits.train.x, digits.train.t, digits.val.x, digits.val.t, epochs=1
        ).checkpoint()


def test_no_checkpoint_inside_an_epoch(digits) -> None:  # type: ignore[no-untyped-def]
    diverging = _trainer(digits, optimizer="sgd", net_kwargs={})
    diverging.optimizer.lr = 1e6
    assert diverging.fit().outcome is Outcome.DIVERGED
    with pytest.raises(CheckpointError, match="inside an epoch"):
        diverging.checkpoint()
    timed_out = _trainer(digits, time_limit=1e-9)
    assert timed_out.fit().outcome is Outcome.TIMED_OUT
    with pytest.raises(CheckpointError, match="inside an epoch"):
        timed_out.checkpoint()

    def boom(record: EpochRecord) -> None:
        raise RuntimeError("callback failed")

    failing = _trainer(digits, callback=boom)
    with pytest.raises(RuntimeError):
        failing.fit()
    with pytest.raises(CheckpointError, match="inside an epoch"):
        failing.checkpoint()
    failing.callback = None
    failing.fit()
    assert failing.checkpoint().epoch == EPOCHS  # a completed fit() is a boundary again


def test_a_resumed_run_counts_the_seconds_before_its_checkpoint(digits, saved) -> None:  # type: ignore[no-untyped-def]
    checkpoint = Checkpoint.from_bytes(saved)
    assert checkpoint.trainer is not None
    late = dataclasses.replace(checkpoint, trainer=dataclasses.replace(checkpoint.trainer, seconds=100.0))
    trainer = _trainer(digits, epochs=2, time_limit=50.0, resume_from=late)
    result = trainer.fit()
    assert result.outcome is Outcome.TIMED_OUT and "epoch 2" in (result.reason or "")
    assert result.steps == checkpoint.trainer.steps + 1 and result.seconds > 100


def test_load_state_checks_everything_before_it_writes() -> None:
    net = MultiLayerNet(4, [3], 2, batchnorm=True, rng=0)
    state = net.state()
    bad = {**{k: np.zeros_like(v) for k, v in state.items()}, "running_var1": np.ones(4, np.float32)}
    with pytest.raises(CheckpointError, match="running_var1"):
        net.load_state(bad)
    with pytest.raises(CheckpointError, match="missing"):
        net.load_state({k: v for k, v in state.items() if k != "W2"})
    for name, value in net.state().items():
        np.testing.assert_array_equal(value, state[name])
    net.load_state({k: np.zeros_like(v) for k, v in state.items()})
    assert not any(v.any() for v in net.state().values())
