"""Advancing and reaping (hpo.orchestration): who moves a study on, and when its Optuna view is written."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
import pytest

from hpo import orchestration as orch
from hpo.orchestration import Executor, _advance, _trial  # their constants and helpers are patched
from hpo.spec import StudySpec
from hpo.storage import Storage, StudyExistsError, TrialOutcome
from tests.hpo.storage import helpers
from tests.tcp_proxy import TcpProxy, proxied


class RecordingExecutor(Executor):
    """The queue's side of reap, recorded: what was sent, and a queue that holds nothing."""

    def __init__(self) -> None:
        self.sent: list[int] = []

    @property
    def queue(self) -> str:
        return "hpo-test"

    def check(self) -> None:
        pass

    def dispatch(self, trial_ids: Sequence[int]) -> None:
        self.sent += trial_ids

    def queued_trial_ids(self) -> set[int] | None:
        return set(self.sent)  # everything sent is still queued: nothing looks lost

    def worker_command(self, *, concurrency: int, queues: str | None, loglevel: str) -> list[str]:
        return []


def _spec(name: str) -> StudySpec:
    return StudySpec.model_validate(
        {
            "name": name,
            "seed": 1,
            "dataset": {"kind": "digits", "subset": 200, "val_fraction": 0.25},
            "model": {"hidden_sizes": [8]},
            "training": {"optimizer": "sgd", "epochs": 1, "batch_size": 50},
            "search": {
                "stages": [{"trials": 4}, {"trials": 4}],
                "parameters": {"lr": {"type": "float", "low": 1e-3, "high": 1.0, "log": True}},
            },
        }
    )


@pytest.fixture
def storage(tmp_path: Path) -> Storage:
    storage = Storage(f"sqlite:///{tmp_path / 'hpo.db'}")
    storage.upgrade()
    return storage


def _finish_without_advancing(storage: Storage, study_id: int) -> None:
    """What a worker killed between recording its result and advancing leaves behind."""
    for trial in storage.trials(study_id, states=("PENDING",)):
        claimed = helpers.claim(storage, trial.id, "w", 60)
        assert claimed is not None
        assert storage.finish(trial.id, "w", TrialOutcome("COMPLETE", 0.5 + trial.number / 100), attempt=1)


def test_reap_moves_on_a_stage_whose_last_finisher_died(storage: Storage) -> None:
    study, _ = orch.submit_study(storage, _spec("died"), queue="hpo-test")
    _finish_without_advancing(storage, study.id)
    assert storage.get_study_by_id(study.id).current_stage == 0
    executor = RecordingExecutor()
    orch.reap(storage, executor)
    stage_1 = [t.id for t in storage.trials(study.id, stage=1)]
    assert len(stage_1) == 4 and executor.sent == stage_1
    # The stage's trials reached the Optuna view before it moved on.
    assert len(optuna.load_study(study_name="died", storage=storage.url).trials) == 4
    orch.reap(storage, executor)  # a second pass changes nothing
    assert executor.sent == stage_1 and len(storage.trials(study.id)) == 8


def test_reap_leaves_other_queues_alone(storage: Storage) -> None:
    study, _ = orch.submit_study(storage, _spec("local"))  # a local run: no queue
    _finish_without_advancing(storage, study.id)
    orch.reap(storage, RecordingExecutor())
    assert storage.get_study_by_id(study.id).current_stage == 0


def test_optuna_view_is_batched_between_stage_ends(storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_advance, "MIRROR_INTERVAL", 3600.0)
    monkeypatch.setattr(_advance, "_last_mirror", {})
    study, _ = orch.submit_study(storage, _spec("batched"))
    pending = storage.trials(study.id, states=("PENDING",))

    def optuna_trials() -> int:
        return len(optuna.load_study(study_name="batched", storage=storage.url).trials)

    assert orch.execute_trial(storage, pending[0].id, "w") == "COMPLETE"
    assert optuna_trials() == 1  # this process's first finish of the study is written at once
    for trial in pending[1:3]:
        orch.execute_trial(storage, trial.id, "w")
    assert optuna_trials() == 1  # then in batches...
    orch.execute_trial(storage, pending[3].id, "w")
    assert optuna_trials() == 4  # ...and always when a stage ends, before it moves on
    assert storage.get_study_by_id(study.id).current_stage == 1
    monkeypatch.setattr(_advance, "MIRROR_INTERVAL", 0.0)
    orch.execute_trial(storage, storage.trials(study.id, states=("PENDING",))[0].id, "w")
    assert optuna_trials() == 5  # with a zero interval, every finish is written


def _slow_spec(name: str) -> StudySpec:
    """Trials of ~1 s: longer than the short leases the heartbeat tests use."""
    spec = _spec(name).model_dump()
    spec["dataset"]["subset"] = 1400
    spec["model"]["hidden_sizes"] = [256, 256]
    spec["training"] |= {"epochs": 150, "batch_size": 32}
    spec["search"]["stages"] = [{"trials": 2}]
    return StudySpec.model_validate(spec)


def test_heartbeat_keeps_a_trial_longer_than_its_lease(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading
    import time

    # A lease of 1 s renewed every third of it: short enough that the trial outlives it several
    # times, long enough that a loaded machine's scheduling pause (seen: ~0.3 s) does not let it lapse.
    lease = 1.0
    # Each epoch takes at least 20 ms, so the 150-epoch trial lasts >= 3 s however fast the machine.
    real_call = _trial._Epochs.__call__

    def slow_epoch(self: _trial._Epochs, record: object) -> bool:
        time.sleep(0.02)
        return real_call(self, record)  # type: ignore[arg-type]

    monkeypatch.setattr(_trial._Epochs, "__call__", slow_epoch)
    study, _ = orch.submit_study(storage, _slow_spec("long"))
    trial = helpers.claim(storage, storage.trials(study.id)[0].id, "w", lease)
    assert trial is not None
    stolen: list[int] = []
    stop = threading.Event()

    def reaper() -> None:  # what another process's reaper does, all along the trial
        while not stop.wait(0.05):
            stolen.extend(storage.requeue_expired(study_id=study.id))

    thread = threading.Thread(target=reaper)
    thread.start()
    start = time.monotonic()
    try:
        report = orch.run_trial(storage, trial, "w", lease=lease)
    finally:
        stop.set()
        thread.join()
    assert time.monotonic() - start > 2 * lease  # two leases at least
    assert stolen == [] and report.recorded and report.state == "COMPLETE"


def test_heartbeat_tells_the_trial_its_study_was_cancelled(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    runs = []

    def build_trainer(*args: Any, **kwargs: Any) -> Any:
        trainer = real(*args, **kwargs)
        fit = trainer.fit

        def recorded_fit() -> Any:
            runs.append(fit())
            return runs[-1]

        trainer.fit = recorded_fit  # type: ignore[method-assign]
        return trainer

    real = orch.build_trainer
    monkeypatch.setattr(_trial, "build_trainer", build_trainer)
    study, _ = orch.submit_study(storage, _slow_spec("cancelled"))
    trial = helpers.claim(storage, storage.trials(study.id)[0].id, "w", 0.3)
    assert trial is not None
    threading.Timer(0.2, storage.cancel_study, args=("cancelled",)).start()
    report = orch.run_trial(storage, trial, "w", lease=0.3)
    assert not report.recorded
    epochs = len(runs[0].history)
    assert 1 <= epochs < 150  # stopped at the epoch after the beat that found the claim gone
    assert helpers.trial(storage, trial.id).state == "PENDING"  # type: ignore[union-attr]  # cancel requeued it


def test_every_trial_records_the_epochs_and_the_seconds_it_trained(storage: Storage) -> None:
    spec = _spec("compute").model_dump()
    spec["search"]["stages"] = [{"trials": 2, "epochs": 2}, {"trials": 2, "epochs": 3}]
    study, _ = orch.submit_study(storage, StudySpec.model_validate(spec))
    while pending := storage.trials(study.id, states=("PENDING",)):
        trial = helpers.claim(storage, pending[0].id, "w", 60)
        assert trial is not None
        report = orch.run_trial(storage, trial, "w")
        row = helpers.trial(storage, trial.id)
        assert row is not None and row.state == "COMPLETE" and report.recorded
        assert row.epochs_trained == (2, 3)[row.stage] == len(row.curves or [])
        # Training spans its epochs (each record's seconds) and is part of the trial's whole run.
        assert row.train_seconds is not None
        assert sum(c["seconds"] for c in row.curves or []) <= row.train_seconds <= report.seconds
    assert len(storage.trials(study.id)) == 4


def test_a_trial_that_fails_before_training_records_no_epochs_and_no_seconds(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    study, _ = orch.submit_study(storage, _spec("too-big"))
    monkeypatch.setattr(_trial, "memory_limit", lambda: 1)  # after the submit's own memory check
    trial = helpers.claim(storage, storage.trials(study.id)[0].id, "w", 60)
    assert trial is not None
    report = orch.run_trial(storage, trial, "w")
    row = helpers.trial(storage, trial.id)
    assert report.state == "FAIL" and row is not None and "does not fit in memory" in (row.reason or "")
    assert (row.epochs_trained, row.train_seconds) == (0, 0.0)


def test_resubmitting_a_study_an_older_release_stored_is_the_same_study(storage: Storage) -> None:
    # An older release stored the spec without the fields added since (their defaults), so its
    # canonical JSON and hash differ from this release's for the same file.
    spec = _spec("older")
    doc = spec.model_dump(mode="json")
    del doc["search"]["narrowing"]["pan_growth"], doc["search"]["narrowing"]["top_cut"]
    older = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    older_hash = hashlib.sha256(older.encode()).hexdigest()
    assert older_hash != spec.spec_hash()
    made, created = storage.create_study(
        "older", older, older_hash, "maximize", orch.first_stage_draft(spec), metric_name="val_acc"
    )
    assert created
    again, created = orch.submit_study(storage, spec)
    assert (again.id, created) == (made.id, False)  # a no-op, as before the upgrade
    different = spec.model_copy(update={"seed": 2})
    with pytest.raises(StudyExistsError):
        orch.submit_study(storage, different)


def _pg_storage_through(proxy: TcpProxy, postgres_url: str) -> Storage:
    import sqlalchemy as sa

    Storage(postgres_url).upgrade()
    url = sa.engine.make_url(postgres_url).set(host="127.0.0.1", port=proxy.port)
    return Storage(url.render_as_string(hide_password=False))


def _cut_at_finish(storage: Storage, proxy: TcpProxy, restore_after: float | None) -> list[float]:
    """Cut ``proxy`` (the trial's link to PostgreSQL) as the trial records its result; restore it
    ``restore_after`` seconds later (never: None). Returns the times ``finish`` was called."""
    import threading
    import time

    calls: list[float] = []
    real = storage.finish

    def finish(*args: Any, **kwargs: Any) -> Any:
        if not calls:
            proxy.cut()
            if restore_after is not None:
                threading.Timer(restore_after, proxy.restore).start()
        calls.append(time.monotonic())
        return real(*args, **kwargs)

    storage.finish = finish  # type: ignore[method-assign]
    return calls


@pytest.mark.services
def test_a_database_blip_as_a_trial_ends_is_ridden_out(postgres_url: str) -> None:
    import uuid

    with proxied(int(postgres_url.rsplit(":", 1)[1].split("/")[0])) as proxy:
        storage = _pg_storage_through(proxy, postgres_url)
        study, _ = orch.submit_study(storage, _spec(f"blip-{uuid.uuid4().hex[:8]}"))
        try:
            trial = helpers.claim(storage, storage.trials(study.id)[0].id, "w", 30)
            assert trial is not None
            calls = _cut_at_finish(storage, proxy, restore_after=0.5)
            report = orch.run_trial(storage, trial, "w", lease=30)
            assert report.recorded and report.state == "COMPLETE"
            assert len(calls) >= 2 and calls[-1] - calls[0] >= 0.4  # failed while cut, then recorded
            row = helpers.trial(storage, trial.id)
            assert row is not None and row.state == "COMPLETE" and row.attempts == 1
        finally:
            storage.delete_study(study.name)


@pytest.mark.services
def test_an_outage_past_the_lease_gives_up_recording_in_one_line(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    import time
    import uuid

    with proxied(int(postgres_url.rsplit(":", 1)[1].split("/")[0])) as proxy:
        storage = _pg_storage_through(proxy, postgres_url)
        study, _ = orch.submit_study(storage, _spec(f"outage-{uuid.uuid4().hex[:8]}"))
        try:
            lease = 1.0
            trial = helpers.claim(storage, storage.trials(study.id)[0].id, "w", lease)
            assert trial is not None
            calls = _cut_at_finish(storage, proxy, restore_after=None)
            with caplog.at_level("WARNING", logger="hpo.orchestration"):
                start = time.monotonic()
                report = orch.run_trial(storage, trial, "w", lease=lease)  # no exception: a report
            assert not report.recorded and len(calls) >= 2
            assert time.monotonic() - start < lease + 15  # bounded: a lease, plus a connect timeout at worst
            lines = [r.getMessage() for r in caplog.records if "result not recorded" in r.getMessage()]
            assert len(lines) == 1 and f"trial {trial.number}:" in lines[0] and "\n" not in lines[0]
            proxy.restore()
            # Nothing was written: the trial is still the lapsed claim the reaper requeues.
            row = helpers.trial(storage, trial.id)
            assert row is not None and row.state == "RUNNING" and row.value is None
            assert storage.requeue_expired(study_id=study.id) == [trial.id]  # its lease has lapsed
        finally:
            proxy.restore()
            storage.delete_study(study.name)
