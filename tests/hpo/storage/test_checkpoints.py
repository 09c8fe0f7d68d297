"""The artifacts a trial's rows name: the rolling checkpoint, the final model, and a study's store."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from hpo.storage import CheckpointRecord, Storage, StudyRow, TrialOutcome, TrialState

from . import helpers

MakeStudy = Callable[..., StudyRow]


def test_create_study_stores_the_artifact_store(storage: Storage, make_study: MakeStudy) -> None:
    study = make_study(2, artifacts="file:///tmp/hpo-store")
    assert study.artifacts == "file:///tmp/hpo-store"
    assert storage.get_study(study.name).artifacts == "file:///tmp/hpo-store"
    assert make_study(2).artifacts is None  # a study made without one (as before revision 0006)


def test_record_checkpoint_is_a_compare_and_set_on_the_claim(storage: Storage, make_study: MakeStudy) -> None:
    study = make_study(2)
    trial = storage.trials(study.id)[0]
    claimed = helpers.claim(storage, trial.id, "w1", 60)
    assert claimed is not None and claimed.checkpoint is None
    attempt = claimed.attempts
    assert storage.record_checkpoint(trial.id, "w1", attempt, "c1", 10) == CheckpointRecord(True, None)
    assert storage.record_checkpoint(trial.id, "w1", attempt, "c2", 20) == CheckpointRecord(True, "c1")
    row = helpers.trial(storage, trial.id)
    assert row is not None and (row.checkpoint, row.checkpoint_epoch) == ("c2", 20)
    # Another worker, or an older claim of the same worker: nothing is written.
    assert storage.record_checkpoint(trial.id, "w2", attempt, "x", 30) == CheckpointRecord(False, None)
    lost = storage.record_checkpoint(trial.id, "w1", claimed.attempts - 1, "x", 30)
    assert lost == CheckpointRecord(False, None) and not lost.recorded
    # A pending trial has no claim to record under.
    other = storage.trials(study.id)[1]
    assert not storage.record_checkpoint(other.id, "w1", 1, "x", 1).recorded
    row = helpers.trial(storage, trial.id)
    assert row is not None and (row.checkpoint, row.checkpoint_epoch) == ("c2", 20)


def test_a_lost_worker_keeps_the_checkpoint_for_the_retry(storage: Storage, make_study: MakeStudy) -> None:
    study = make_study(1)
    trial = storage.trials(study.id)[0]
    claimed = helpers.claim(storage, trial.id, "w1", 60)
    assert claimed is not None
    assert storage.record_checkpoint(trial.id, "w1", claimed.attempts, "c1", 30).recorded
    later = datetime.now(UTC) + timedelta(hours=1)
    assert storage.requeue_expired(now=later, study_id=study.id) == [trial.id]
    retry = helpers.claim(storage, trial.id, "w2", 60)
    assert retry is not None and retry.attempts == 2
    assert (retry.checkpoint, retry.checkpoint_epoch, retry.curves) == ("c1", 30, None)
    # The old claim cannot overwrite what the retry records.
    assert not storage.record_checkpoint(trial.id, "w1", claimed.attempts, "late", 40).recorded
    assert storage.record_checkpoint(trial.id, "w2", retry.attempts, "c2", 40) == CheckpointRecord(True, "c1")


def test_finish_records_the_model_and_clears_the_checkpoint(storage: Storage, make_study: MakeStudy) -> None:
    study = make_study(2)
    first, second = storage.trials(study.id)
    for trial, model in ((first, "m0"), (second, None)):
        claimed = helpers.claim(storage, trial.id, "w", 60)
        assert claimed is not None
        assert storage.record_checkpoint(trial.id, "w", claimed.attempts, f"c{trial.number}", 5).recorded
        outcome = TrialOutcome(TrialState.COMPLETE, 0.5, model=model)
        assert storage.finish(trial.id, "w", outcome, attempt=claimed.attempts) is not None
    done = {t.number: t for t in storage.trials(study.id)}
    assert (done[0].model, done[0].checkpoint, done[0].checkpoint_epoch) == ("m0", None, None)
    assert (done[1].model, done[1].checkpoint, done[1].checkpoint_epoch) == (None, None, None)
    assert storage.best_trials(study.id, "maximize", 2)[0].model in ("m0", None)


def test_delete_study_returns_every_artifact_its_trials_named(
    storage: Storage, make_study: MakeStudy
) -> None:
    study = make_study(3, artifacts="file:///tmp/hpo-store")
    t0, t1, t2 = storage.trials(study.id)
    c0 = helpers.claim(storage, t0.id, "w", 60)
    assert c0 is not None
    assert storage.record_checkpoint(t0.id, "w", c0.attempts, "c0", 1).recorded
    assert storage.finish(t0.id, "w", TrialOutcome(TrialState.COMPLETE, 1.0, model="m0"), attempt=c0.attempts)
    c1 = helpers.claim(storage, t1.id, "w", 60)
    assert c1 is not None
    assert storage.record_checkpoint(t1.id, "w", c1.attempts, "c1", 1).recorded  # still running
    assert sorted(storage.delete_study(study.name)) == ["c1", "m0"]
    assert storage.find_study(study.name) is None
    assert t2.model is None
