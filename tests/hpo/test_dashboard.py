"""optuna-dashboard reads an hpo database directly (through its WSGI API, as its web page does)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.cli import ROOT
from tests.hpo.test_local import _study_file


def _get_bytes(app: Any, path: str) -> tuple[str, bytes]:
    """GET ``path`` from the dashboard's WSGI app: its status line and body."""
    from wsgiref.util import setup_testing_defaults

    env: dict[str, Any] = {}
    setup_testing_defaults(env)
    env.update(PATH_INFO=path, REQUEST_METHOD="GET")
    status: dict[str, str] = {}

    def start_response(code: str, headers: Any, exc_info: Any = None) -> None:
        status["code"] = code

    body = b"".join(app(env, start_response))
    return status["code"], body


def _get(app: Any, path: str) -> tuple[str, Any]:
    code, body = _get_bytes(app, path)
    return code, json.loads(body)


def test_dashboard_shows_the_study_with_params_values_and_curves(tmp_path: Path) -> None:
    from optuna_dashboard import wsgi

    db = f"sqlite:///{tmp_path / 'hpo.db'}"
    cmd = [
        sys.executable,
        "-m",
        "hpo",
        "submit",
        str(_study_file(tmp_path, t0=4, t1=3, epochs=3)),
        "--db",
        db,
        "--no-progress",
    ]
    assert subprocess.run(cmd, cwd=ROOT, capture_output=True, check=False).returncode == 0
    app = wsgi(storage=db)
    code, studies = _get(app, "/api/studies")
    assert code.startswith("200")
    [summary] = studies["study_summaries"]
    assert summary["study_name"] == "s"
    code, detail = _get(app, f"/api/studies/{summary['study_id']}")
    assert code.startswith("200")
    trials = detail["trials"]
    assert len(trials) == 7
    assert {t["state"] for t in trials} == {"Complete"}
    assert all({p["name"] for p in t["params"]} == {"lr", "weight_decay"} for t in trials)
    assert all(t["intermediate_values"] for t in trials)  # per-epoch validation accuracy
    # The objective is named by its metric (the dashboard shows "Objective 0" without a name), and
    # the stage is the one hpo's commands show, counted from 1.
    assert detail["objective_names"] == ["val_acc"]
    stages = {a["value"] for t in trials for a in t["user_attrs"] if a["key"] == "stage"}
    assert stages == {"1", "2"}


def test_dashboard_lists_a_trials_model_and_serves_it(tmp_path: Path) -> None:
    from optuna.artifacts import FileSystemArtifactStore
    from optuna_dashboard import wsgi

    from hpo.artifacts import open_store, store_path
    from hpo.orchestration import check_artifact_store
    from hpo.storage import Storage, TrialOutcome, TrialState
    from tests.hpo.storage import helpers
    from tests.hpo.storage.conftest import draft

    db = f"sqlite:///{tmp_path / 'hpo.db'}"
    storage = Storage(db)
    storage.upgrade()
    url = check_artifact_store(db, None)  # the default store, beside the database
    study, _ = storage.create_study("s", '{"n": 2}', "h", "maximize", draft(0, 2, 0), artifacts=url)
    # A worker keeps each trial's final checkpoint: here, bytes of our own for trial 1 only.
    model = open_store(url).put(b"the trained network")
    for trial in storage.trials(study.id):
        claimed = helpers.claim(storage, trial.id, "w", 60)
        assert claimed is not None
        outcome = TrialOutcome(TrialState.COMPLETE, 0.5, model=model if trial.number == 1 else None)
        assert storage.finish(trial.id, "w", outcome, attempt=claimed.attempts) is not None
    assert storage.mirror(study.id) == 2
    folder = store_path(url)
    assert folder == tmp_path / "hpo.db.artifacts"
    # What `optuna-dashboard DB --artifact-dir FOLDER` serves.
    app = wsgi(storage=db, artifact_store=FileSystemArtifactStore(str(folder)))
    optuna_id = storage.get_study("s").optuna_study_id

    def listed() -> dict[int, Any]:
        code, detail = _get(app, f"/api/studies/{optuna_id}")
        assert code.startswith("200")
        return {t["number"]: t for t in detail["trials"]}

    trials = listed()
    assert trials[0]["artifacts"] == []
    assert trials[1]["artifacts"] == [
        {
            "artifact_id": model,
            "filename": "s-trial-1.npz",
            "mimetype": "application/octet-stream",
            "encoding": None,
        }
    ]
    code, body = _get_bytes(app, f"/artifacts/{optuna_id}/{trials[1]['trial_id']}/{model}")
    assert code.startswith("200") and body == b"the trained network"
    # Optuna's own reader agrees.
    import optuna

    loaded = optuna.load_study(study_name="s", storage=db)
    [meta] = optuna.artifacts.get_all_artifact_meta(loaded.trials[1], storage=loaded._storage)
    assert (meta.artifact_id, meta.filename) == (model, "s-trial-1.npz")
    # A view repaired by `hpo db repair` (Storage.sync) names the model again.
    helpers.delete_optuna_trials(storage, [t["trial_id"] for t in trials.values()])
    assert storage.sync(study.id) == 2
    again = listed()
    assert [a["artifact_id"] for a in again[1]["artifacts"]] == [model] and again[0]["artifacts"] == []
    code, body = _get_bytes(app, f"/artifacts/{optuna_id}/{again[1]['trial_id']}/{model}")
    assert code.startswith("200") and body == b"the trained network"
