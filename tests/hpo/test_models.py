"""The networks a study keeps: final models, checkpoints a retry resumes from, the test score
from the saved model, and `hpo model`, `hpo predict`, `hpo verify`."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import engine
from hpo import orchestration as orch
from hpo.spec import DatasetSpec, StudySpec
from hpo.storage import Storage, StudyRow
from tests.cli import run_hpo as _hpo
from tests.hpo.storage import helpers
from tests.invariants import check_study

STUDY = """\
name: {name}
seed: 3
dataset: {{kind: digits, subset: 500, val_fraction: 0.25, test_fraction: 0.2}}
model: {{hidden_sizes: [24], activation: relu, weight_init: he}}
training: {{optimizer: adam, lr: 0.003, epochs: 6, batch_size: 50}}
search:
  sampler: random
  stages: [{{trials: 4}}]
  parameters:
    lr: {{type: float, low: 1.0e-3, high: 1.0e-2, log: true}}
checkpoints: {{every: 2}}
"""


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One small study run by `hpo submit`, its database and its folder."""
    tmp = tmp_path_factory.mktemp("models")
    path = tmp / "m.yaml"
    path.write_text(STUDY.format(name="m"))
    db = f"sqlite:///{tmp / 'hpo.db'}"
    proc = _hpo("submit", str(path), "--db", db, "-w", "2", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    return {"db": db, "tmp": tmp, "storage": Storage(db)}


def test_every_complete_trial_keeps_its_final_model_and_no_checkpoint(finished: dict[str, Any]) -> None:
    storage: Storage = finished["storage"]
    facts = check_study(storage, "m")
    study = facts["study"]
    assert study.artifacts  # the folder beside the SQLite file
    folder = finished["tmp"] / "hpo.db.artifacts"
    assert folder.is_dir()
    trials = storage.trials(study.id)
    assert trials and all(t.state == "COMPLETE" and t.model for t in trials)
    assert all(t.checkpoint is None and t.checkpoint_epoch is None for t in trials)
    # The rolling checkpoints (epochs 2 and 4 of 6) were removed: only the models are left.
    assert sorted(p.name for p in folder.iterdir()) == sorted(t.model for t in trials if t.model)
    for t in trials:
        checkpoint = orch.saved_model(study, t)
        assert checkpoint.epoch == 6 and checkpoint.optimizer is not None
        assert checkpoint.preprocessing is not None and checkpoint.preprocessing.mode == "scale"
        history = [r.as_dict() for r in checkpoint.trainer.history] if checkpoint.trainer else []
        assert history == t.curves  # the model is the network the trial's curves describe


def test_the_test_score_comes_from_the_saved_model_and_verify_reproduces_it(finished: dict[str, Any]) -> None:
    storage: Storage = finished["storage"]
    study = storage.get_study("m")
    test = study.test_result
    assert test["source"] == "model" and test["note"] is None
    assert test["test_size"] == 359  # 20 % of the 1797 digits
    best = orch.pick_trial(storage, study)
    assert test["trial_number"] == best.number
    # Scoring the saved network gives what retraining the winner from its seed gives, bit for bit.
    proc = _hpo("verify", "m", "--db", finished["db"])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2, proc.stdout
    assert lines[0] == f"trial {best.number} value: stored {best.value!r}, retrained {best.value!r}: equal"
    assert lines[1].startswith(f"trial {best.number} test accuracy: stored {test['test_acc']!r}")
    assert lines[1].endswith(": equal")


def test_model_exports_a_network_engine_loads_and_predict_agrees(finished: dict[str, Any]) -> None:
    storage: Storage = finished["storage"]
    tmp: Path = finished["tmp"]
    out = tmp / "model.npz"
    proc = _hpo("model", "m", "-o", str(out), "--db", finished["db"])
    assert proc.returncode == 0, proc.stderr
    data = out.read_bytes()
    net = engine.load_model(data)  # the exported file is an engine model
    prep = engine.Checkpoint.from_bytes(data).preprocessing
    assert prep is not None and prep.classes == tuple(range(10))
    # Raw rows (the digits' 0..16 pixel values), as a user has them.
    split = {"subset": 500, "val_fraction": 0.25, "test_fraction": 0.2, "seed": 0}
    raw = engine.load_dataset("digits", normalize="none", **split)  # type: ignore[arg-type]
    x = raw.test.x[:25].astype(np.float64)
    expected = net.predict_proba(prep.apply(x, net.dtype))
    csv_path = tmp / "rows.csv"
    np.savetxt(csv_path, x, delimiter=",", fmt="%g", header=",".join(f"p{i}" for i in range(64)), comments="")
    npz_path = tmp / "rows.npz"
    np.savez(npz_path, x=x)
    for path in (csv_path, npz_path):
        proc = _hpo("predict", "m", str(path), "-f", "json", "--db", finished["db"])
        assert proc.returncode == 0, proc.stderr
        rows = json.loads(proc.stdout)
        assert [r["row"] for r in rows] == list(range(25))
        assert [r["class"] for r in rows] == expected.argmax(axis=1).tolist()
        np.testing.assert_allclose([r["probability"] for r in rows], expected.max(axis=1), rtol=1e-6)
    # The best trial's network; --trial picks another one's.
    best = orch.pick_trial(storage, storage.get_study("m"))
    other = next(t for t in storage.trials(best.study_id) if t.number != best.number)
    again = tmp / "other.npz"
    proc = _hpo("model", "m", "--trial", str(other.number), "-o", str(again), "--db", finished["db"])
    assert proc.returncode == 0, proc.stderr
    assert engine.load_model(again.read_bytes()).architecture == net.architecture
    assert again.read_bytes() != data
    table = _hpo("predict", "m", str(csv_path), "--db", finished["db"])
    assert table.returncode == 0 and "probability" in table.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["model", "m", "--trial", "99", "-o", "{tmp}/x.npz"], "has no trial 99"),
        (["model", "nope", "-o", "{tmp}/x.npz"], "nope"),
        (["model", "m", "-o", "{tmp}/missing/x.npz"], "does not exist"),
        (["predict", "m", "{tmp}/absent.csv"], "DATA"),
        (["predict", "m", "{tmp}/m.yaml"], "DATA"),
    ],
)
def test_bad_model_and_predict_input_is_one_line_and_exit_2(
    finished: dict[str, Any], args: list[str], message: str
) -> None:
    proc = _hpo(*[a.format(tmp=finished["tmp"]) for a in args], "--db", finished["db"])
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (finished["tmp"] / "x.npz").exists()


def test_predict_drops_the_label_column_of_the_studys_own_csv(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 3))
    labels = np.where(x[:, 0] > 0, "yes", "no")
    csv_path = tmp_path / "d.csv"
    lines = ["a,label,b,c"] + [f"{r[0]},{lab},{r[1]},{r[2]}" for r, lab in zip(x, labels, strict=True)]
    csv_path.write_text("\n".join(lines) + "\n")
    study = tmp_path / "c.yaml"
    study.write_text(
        "name: c\ndataset: {kind: csv, path: d.csv, label_column: label}\n"
        "model: {hidden_sizes: [4]}\ntraining: {optimizer: adam, lr: 0.01, epochs: 3, batch_size: 20}\n"
        "search: {sampler: random, stages: [{trials: 1}],\n"
        "  parameters: {lr: {type: float, low: 0.001, high: 0.01}}}\n"
    )
    db = f"sqlite:///{tmp_path / 'hpo.db'}"
    assert _hpo("submit", str(study), "--db", db, "-w", "1", "--no-progress").returncode == 0
    proc = _hpo("predict", "c", str(csv_path), "-f", "csv", "--db", db)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert out[0] == "row,class,probability" and len(out) == 121
    assert {line.split(",")[1] for line in out[1:]} <= {"yes", "no"}  # the data's own labels
    # Without a header, text labels are not taken for one; the label column is found by index.
    bare = tmp_path / "bare.csv"
    bare.write_text("\n".join(lines[1:]) + "\n")
    by_index = DatasetSpec.model_construct(kind="csv", label_column=1)
    np.testing.assert_array_equal(orch.read_features(bare, 3, by_index), x)
    np.testing.assert_array_equal(orch.read_features(csv_path, 3, by_index), x)
    features_only = tmp_path / "f.csv"
    np.savetxt(features_only, x, delimiter=",")
    np.testing.assert_array_equal(orch.read_features(features_only, 3, by_index), x)


# --- resuming a trial in process ----------------------------------------------------------------


def _spec(name: str, every: int) -> StudySpec:
    return StudySpec.model_validate(
        {
            "name": name,
            "seed": 5,
            "dataset": {"kind": "digits", "subset": 300, "val_fraction": 0.25},
            "model": {"hidden_sizes": [16], "dropout": 0.1},
            "training": {"optimizer": "momentum", "lr": 0.05, "epochs": 50, "batch_size": 40},
            "search": {
                "stages": [{"trials": 1}],
                "parameters": {"lr": {"type": "float", "low": 1e-3, "high": 0.1, "log": True}},
            },
            "checkpoints": {"every": every},
        }
    )


@pytest.fixture
def local(tmp_path: Path) -> Storage:
    storage = Storage(f"sqlite:///{tmp_path / 'hpo.db'}")
    storage.upgrade()
    return storage


def _submit(storage: Storage, spec: StudySpec, store: Path) -> tuple[StudyRow, bool]:
    """The study written with its artifact store (what `hpo submit --artifacts STORE` does)."""
    from hpo.artifacts import open_store, resolve_store_url

    url = resolve_store_url(storage.url, str(store))
    open_store(url).check()
    return storage.create_study(
        spec.name or "",
        spec.canonical_json(),
        spec.spec_hash(),
        spec.objective.direction,
        orch.first_stage_draft(spec),
        metric_name=spec.objective.metric,
        artifacts=url,
    )


def _checkpoint_seconds(study: StudyRow, artifact_id: str) -> float:
    """The training seconds a trial's checkpoint records."""
    from hpo.artifacts import open_store

    assert study.artifacts is not None
    position = engine.Checkpoint.from_bytes(open_store(study.artifacts).get(artifact_id)).trainer
    assert position is not None and position.epoch == 30
    return position.seconds


def _without_seconds(curves: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    return [{k: v for k, v in c.items() if k != "seconds"} for c in curves or []]


def test_a_retry_resumes_from_the_last_checkpoint_and_ends_as_an_uninterrupted_run(
    local: Storage, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spec = _spec("resume", every=10)
    study, _ = _submit(local, spec, tmp_path / "store")
    (trial,) = local.trials(study.id)
    claimed = helpers.claim(local, trial.id, "w1", 60)
    assert claimed is not None
    seen: list[int] = []

    def stop_after_33() -> bool:  # the first attempt stops after epoch 33 (its worker "dies")
        seen.append(1)
        return len(seen) >= 33

    report = orch.run_trial(local, claimed, "w1", should_stop=stop_after_33)
    assert not report.recorded
    row = helpers.trial(local, trial.id)
    assert row is not None and row.state == "PENDING" and row.checkpoint and row.checkpoint_epoch == 30
    carried = _checkpoint_seconds(study, row.checkpoint)
    again = helpers.claim(local, trial.id, "w2", 60)
    assert again is not None
    with caplog.at_level(logging.WARNING, logger="hpo.orchestration"):
        report = orch.run_trial(local, again, "w2")
    assert report.recorded and report.state == "COMPLETE"
    # The trial trained all 50 epochs itself; its seconds are the first attempt's up to its
    # checkpoint, carried by it, and the retry's.
    done = helpers.trial(local, trial.id)
    assert done is not None and done.epochs_trained == 50 and done.train_seconds is not None
    assert carried < done.train_seconds <= carried + report.seconds
    resumed = f"trial {trial.number} (attempt {again.attempts}) resumes from its checkpoint at epoch 30"
    assert resumed in caplog.text
    assert done.checkpoint is None and done.model
    # What the same trial gives trained in one go, in this process.
    run = orch.train_network(spec.trial_spec(trial.params, trial.stage, seed=trial.seed))
    assert _without_seconds(done.curves) == _without_seconds([r.as_dict() for r in run.result.history])
    assert done.value == orch.objective_value(spec, run.result.history)
    model = orch.saved_model(local.get_study_by_id(study.id), done)
    for name, array in model.arrays.items():
        np.testing.assert_array_equal(array, run.net.state()[name])
    # The old checkpoints were removed as they were superseded: only the model is left.
    assert [p.name for p in (tmp_path / "store").iterdir()] == [done.model]


def test_an_unreadable_checkpoint_is_logged_and_the_trial_starts_afresh(
    local: Storage, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spec = _spec("afresh", every=5)
    study, _ = _submit(local, spec, tmp_path / "store")
    (trial,) = local.trials(study.id)
    claimed = helpers.claim(local, trial.id, "w1", 60)
    assert claimed is not None
    count: list[int] = []
    orch.run_trial(local, claimed, "w1", should_stop=lambda: count.append(1) or len(count) >= 12)
    row = helpers.trial(local, trial.id)
    assert row is not None and row.checkpoint
    (tmp_path / "store" / row.checkpoint).write_bytes(b"not a checkpoint")
    again = helpers.claim(local, trial.id, "w2", 60)
    assert again is not None
    with caplog.at_level(logging.WARNING, logger="hpo.orchestration"):
        report = orch.run_trial(local, again, "w2")
    assert report.state == "COMPLETE"
    assert "cannot be read, starting afresh" in caplog.text and "resumes from" not in caplog.text
    done = helpers.trial(local, trial.id)
    assert done is not None and len(done.curves or []) == 50
    run = orch.train_network(spec.trial_spec(trial.params, trial.stage, seed=trial.seed))
    assert done.value == orch.objective_value(spec, run.result.history)


def test_a_failing_store_never_fails_the_trial_and_the_winner_is_retrained(
    local: Storage, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = tmp_path / "store"
    spec = _spec("nostore", every=10)
    study, _ = _submit(local, spec, store)
    store.rmdir() if store.is_dir() else None
    store.write_text("a file where the folder was")  # every put now fails
    (trial,) = local.trials(study.id)
    claimed = helpers.claim(local, trial.id, "w1", 60)
    assert claimed is not None
    with caplog.at_level(logging.WARNING, logger="hpo.orchestration"):
        report = orch.run_trial(local, claimed, "w1")
    assert report.state == "COMPLETE" and report.recorded
    assert "not saved" in caplog.text
    done = helpers.trial(local, trial.id)
    assert done is not None and done.model is None and done.checkpoint is None
    test = local.get_study_by_id(study.id).test_result
    assert test["source"] == "retrained" and test["reproduced"] is True
    assert "no saved model" in test["note"]


def test_the_readme_goes_from_submit_to_predictions_in_two_commands(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    commands = ["hpo submit examples/digits.yaml", "hpo predict digits-lr-wd examples/digits-rows.csv"]
    for command in commands:
        assert f"\n{command} " in readme
    # Run from a folder of their own (the default database hpo.db and its artifacts land there).
    submit = _hpo("submit", str(root / "examples" / "digits.yaml"), cwd=tmp_path)
    assert submit.returncode == 0, submit.stderr
    assert (tmp_path / "hpo.db.artifacts").is_dir()
    proc = _hpo(
        "predict", "digits-lr-wd", str(root / "examples" / "digits-rows.csv"), "-f", "json", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert len(rows) == 8 and all(0 < r["probability"] <= 1 for r in rows)
    truth = [6, 6, 6, 2, 5, 6, 6, 2]  # the held-out digits' own labels
    assert sum(r["class"] == t for r, t in zip(rows, truth, strict=True)) >= 7


def test_verify_exits_1_when_the_stored_result_is_not_what_the_seed_gives(
    finished: dict[str, Any], tmp_path: Path
) -> None:
    import shutil

    import sqlalchemy as sa

    copy = tmp_path / "copy.db"
    shutil.copy(finished["tmp"] / "hpo.db", copy)
    db = f"sqlite:///{copy}"
    storage = Storage(db)
    best = orch.pick_trial(storage, storage.get_study("m"))
    with storage.engine.begin() as conn:  # as if the winner's stored value had been tampered with
        conn.execute(sa.text("UPDATE hpo_trials SET value = value + 0.5 WHERE id = :id"), {"id": best.id})
    storage.dispose()
    proc = _hpo("verify", "m", "--db", db)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    value, test = proc.stdout.splitlines()
    assert value.startswith(f"trial {best.number} value: stored ") and value.endswith(": DIFFERENT")
    assert test.endswith(": equal")  # the saved model's test score is still the seed's


def test_a_study_made_before_models_were_kept_says_so(finished: dict[str, Any], tmp_path: Path) -> None:
    import shutil

    import sqlalchemy as sa

    copy = tmp_path / "old.db"
    shutil.copy(finished["tmp"] / "hpo.db", copy)
    db = f"sqlite:///{copy}"
    storage = Storage(db)
    with storage.engine.begin() as conn:  # what migration 0006 leaves on an older study
        conn.execute(sa.text("UPDATE hpo_studies SET artifacts = NULL"))
        conn.execute(sa.text("UPDATE hpo_trials SET model = NULL"))
    storage.dispose()
    for args in (["model", "m", "-o", str(tmp_path / "x.npz")], ["predict", "m", str(tmp_path / "x.csv")]):
        (tmp_path / "x.csv").write_text("1,2\n")
        proc = _hpo(*args, "--db", db)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "made before hpo kept models" in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert not (tmp_path / "x.npz").exists()
    # Its winner is still scored, retrained from its seed as before (and said so).
    study = Storage(db).get_study("m")
    orch.evaluate_on_test(Storage(db), orch.study_spec(study), study.id)
    test = Storage(db).get_study("m").test_result
    assert test["source"] == "retrained" and test["reproduced"] is True and "no saved model" in test["note"]
    assert test["test_acc"] == finished["storage"].get_study("m").test_result["test_acc"]


def test_a_checkpoint_whose_claim_was_lost_is_removed_and_never_recorded(
    local: Storage, tmp_path: Path
) -> None:
    from hpo.orchestration._checkpoints import TrialCheckpoints

    spec = _spec("lost", every=1)
    study, _ = _submit(local, spec, tmp_path / "store")
    (trial,) = local.trials(study.id)
    claimed = helpers.claim(local, trial.id, "w1", 60)
    assert claimed is not None
    train_spec = spec.trial_spec(claimed.params, claimed.stage, seed=claimed.seed)
    saver = TrialCheckpoints(local, study, claimed, "w1", every=1, epochs=50)
    saver.trainer = orch.build_trainer(train_spec, orch.load_data(train_spec.dataset))
    saver.after_epoch(1)  # held: recorded
    first = helpers.trial(local, trial.id)
    assert first is not None and first.checkpoint and first.checkpoint_epoch == 1
    saver.after_epoch(2)  # held: recorded, the first one removed
    second = helpers.trial(local, trial.id)
    assert second is not None and second.checkpoint != first.checkpoint and second.checkpoint_epoch == 2
    assert [p.name for p in (tmp_path / "store").iterdir()] == [second.checkpoint]
    local.release(trial.id, "w1", attempt=claimed.attempts)  # the claim is gone
    saver.after_epoch(3)
    after = helpers.trial(local, trial.id)
    assert after is not None and after.checkpoint == second.checkpoint and after.checkpoint_epoch == 2
    assert [p.name for p in (tmp_path / "store").iterdir()] == [second.checkpoint]  # the new one removed
    saver.after_epoch(50)  # never after the last epoch: the model is saved then
    assert [p.name for p in (tmp_path / "store").iterdir()] == [second.checkpoint]
