"""Promotion across stages, run: a promoted trial continues its parent's saved network to its own
stage's epochs (hpo.orchestration's run_trial, _checkpoints), or, when that network cannot be used,
trains from scratch to the same result. Local studies on SQLite, the artifact store in tmp_path."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from hpo import orchestration as orch
from hpo.spec import StudySpec
from hpo.storage import Storage, StudyRow, TrialRow
from tests.cli import run_hpo
from tests.hpo.storage import helpers
from tests.invariants import check_study

PARENT_EPOCHS, CHILD_EPOCHS = 3, 6


def _spec(name: str) -> StudySpec:
    """6 trials of 3 epochs, then 4 of 6 whose first 2 continue stage 0's best two."""
    return StudySpec.model_validate(
        {
            "name": name,
            "seed": 2,
            "dataset": {"kind": "digits", "subset": 300, "val_fraction": 0.25, "test_fraction": 0.2},
            "model": {"hidden_sizes": [16], "dropout": 0.1},
            "training": {"optimizer": "momentum", "lr": 0.05, "batch_size": 40},
            "search": {
                "stages": [{"trials": 6, "epochs": PARENT_EPOCHS}, {"trials": 4, "epochs": CHILD_EPOCHS}],
                "parameters": {"lr": {"type": "float", "low": 1e-3, "high": 0.3, "log": True}},
                "narrowing": {"promote": 0.5},
            },
            "checkpoints": {"every": 2},
        }
    )


@pytest.fixture
def storage(tmp_path: Path) -> Storage:
    storage = Storage(f"sqlite:///{tmp_path / 'hpo.db'}")
    storage.upgrade()
    return storage


def _create(storage: Storage, spec: StudySpec, artifacts: str | None) -> StudyRow:
    """The study, with the artifact store ``artifacts`` (None: it keeps no networks)."""
    study, _ = storage.create_study(
        spec.name or "",
        spec.canonical_json(),
        spec.spec_hash(),
        spec.objective.direction,
        orch.first_stage_draft(spec),
        metric_name=spec.objective.metric,
        artifacts=artifacts,
    )
    return study


def _run_stage(storage: Storage, study_id: int, stage: int) -> None:
    """Run the stage's PENDING trials in this process, one after another (the last moves it on)."""
    for trial in storage.trials(study_id, states=("PENDING",), stage=stage):
        assert orch.execute_trial(storage, trial.id, "w") == "COMPLETE"


def _without_seconds(curves: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    return [{k: v for k, v in c.items() if k != "seconds"} for c in curves or []]


def _children(storage: Storage, study_id: int) -> list[tuple[TrialRow, TrialRow]]:
    """``(child, parent)`` of each promoted trial."""
    pairs = []
    for child in storage.trials(study_id, stage=1):
        if child.parent_id is not None:
            parent = storage.find_trial(child.parent_id)
            assert parent is not None
            pairs.append((child, parent))
    return pairs


def _assert_as_from_scratch(spec: StudySpec, child: TrialRow) -> None:
    """The child's curves (timings aside) and value are those of its params and seed trained
    from scratch for its stage's epochs, in this process."""
    run = orch.train_network(spec.trial_spec(child.params, child.stage, seed=child.seed))
    assert _without_seconds(child.curves) == _without_seconds([r.as_dict() for r in run.result.history])
    assert child.value == orch.objective_value(spec, run.result.history)


def test_a_promoted_trial_continues_its_parents_network_in_a_local_study(
    storage: Storage, tmp_path: Path
) -> None:
    spec = _spec("promoted")
    study, _ = orch.submit_study(storage, spec, artifacts=str(tmp_path / "store"))
    orch.run_local(storage, study, workers=2)
    check_study(storage, "promoted")
    pairs = _children(storage, study.id)
    assert [child.number for child, _ in pairs] == [6, 7]
    for child, parent in pairs:
        assert parent.stage == 0 and (child.params, child.seed) == (parent.params, parent.seed)
        # Its first epochs are its parent's, timings and all: they were not trained again.
        assert child.curves is not None and len(child.curves) == CHILD_EPOCHS
        assert child.curves[:PARENT_EPOCHS] == parent.curves
        assert child.epochs_trained == CHILD_EPOCHS - PARENT_EPOCHS
        assert child.model and child.model != parent.model  # its own network, the parent's kept
        _assert_as_from_scratch(spec, child)
    fresh = [t for t in storage.trials(study.id) if t.parent_id is None]
    assert {(t.stage, t.epochs_trained) for t in fresh} == {(0, PARENT_EPOCHS), (1, CHILD_EPOCHS)}
    # hpo status shows which trials each stage continued.
    doc = json.loads(run_hpo("status", "promoted", "--db", storage.url, "-f", "json").stdout)
    assert [s["promoted"] for s in doc["stages"]] == [
        "",
        " ".join(f"{p.number}->{c.number}" for c, p in pairs),
    ]


def test_without_an_artifact_store_a_promoted_trial_trains_from_scratch(
    storage: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    spec = _spec("nostore")
    study = _create(storage, spec, None)
    _run_stage(storage, study.id, 0)
    with caplog.at_level(logging.WARNING, logger="hpo.orchestration"):
        _run_stage(storage, study.id, 1)
    check_study(storage, "nostore")
    pairs = _children(storage, study.id)
    assert len(pairs) == 2
    for child, parent in pairs:
        assert (
            f"trial {child.number} cannot continue the model of its parent: the study keeps no" in caplog.text
        )
        assert f"trial {child.number} trains from scratch" in caplog.text
        assert child.epochs_trained == CHILD_EPOCHS  # nothing inherited
        assert _without_seconds(child.curves)[:PARENT_EPOCHS] == _without_seconds(parent.curves)
        _assert_as_from_scratch(spec, child)


def test_a_parent_model_that_is_unreadable_or_of_another_network_is_not_continued(
    storage: Storage, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spec = _spec("broken")
    study, _ = orch.submit_study(storage, spec, artifacts=str(tmp_path / "store"))
    _run_stage(storage, study.id, 0)
    (first, p1), (second, p2) = _children(storage, study.id)
    assert p1.model and p2.model
    (tmp_path / "store" / p1.model).write_bytes(b"not a checkpoint")
    # A checkpoint of a run of another network (8 hidden units instead of 16) in place of p2's.
    other = spec.model_copy(update={"model": spec.model.model_copy(update={"hidden_sizes": [8]})})
    trainer = orch.build_trainer(
        other.trial_spec(p2.params, 0, seed=p2.seed), orch.load_data(spec.dataset, spec.training.dtype)
    )
    trainer.fit()
    (tmp_path / "store" / p2.model).write_bytes(trainer.checkpoint().to_bytes())
    with caplog.at_level(logging.WARNING, logger="hpo.orchestration"):
        _run_stage(storage, study.id, 1)
    check_study(storage, "broken")
    assert f"trial {first.number} cannot continue the model of trial {p1.number}" in caplog.text
    assert "checkpoint does not fit the trial" in caplog.text
    for child in (first, second):
        done = storage.find_trial(child.id)
        assert done is not None and done.epochs_trained == CHILD_EPOCHS
        assert f"trial {child.number} trains from scratch" in caplog.text
        _assert_as_from_scratch(spec, done)


def test_a_retry_of_a_promoted_trial_resumes_from_its_own_checkpoint(
    storage: Storage, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spec = _spec("retry")
    study, _ = orch.submit_study(storage, spec, artifacts=str(tmp_path / "store"))
    _run_stage(storage, study.id, 0)
    (child, parent), _ = _children(storage, study.id)
    claimed = helpers.claim(storage, child.id, "w1", 60)
    assert claimed is not None
    epochs: list[int] = []
    # The first attempt continues the parent (epochs 4 and 5 of 6: a checkpoint after 4), then
    # its worker "dies".
    report = orch.run_trial(storage, claimed, "w1", should_stop=lambda: epochs.append(1) or len(epochs) >= 2)
    assert not report.recorded
    row = storage.find_trial(child.id)
    assert row is not None and row.state == "PENDING" and row.checkpoint_epoch == 4
    again = helpers.claim(storage, child.id, "w2", 60)
    assert again is not None
    with caplog.at_level(logging.INFO, logger="hpo.orchestration"):
        report = orch.run_trial(storage, again, "w2")
    assert report.recorded and report.state == "COMPLETE"
    assert (
        f"trial {child.number} (attempt {again.attempts}) resumes from its checkpoint at epoch 4"
        in caplog.text
    )
    assert "continues its parent's model" not in caplog.text
    done = storage.find_trial(child.id)
    assert done is not None and done.curves is not None
    assert done.curves[:PARENT_EPOCHS] == parent.curves  # still the parent's epochs, inherited
    assert done.epochs_trained == CHILD_EPOCHS - PARENT_EPOCHS
    _assert_as_from_scratch(spec, done)
