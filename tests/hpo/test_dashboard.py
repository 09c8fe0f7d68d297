"""optuna-dashboard reads an hpo database directly (through its WSGI API, as its web page does)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.cli import ROOT
from tests.hpo.test_local import _study_file


def _get(app: Any, path: str) -> tuple[str, Any]:
    from wsgiref.util import setup_testing_defaults

    env: dict[str, Any] = {}
    setup_testing_defaults(env)
    env.update(PATH_INFO=path, REQUEST_METHOD="GET")
    status: dict[str, str] = {}

    def start_response(code: str, headers: Any, exc_info: Any = None) -> None:
        status["code"] = code

    body = b"".join(app(env, start_response))
    return status["code"], json.loads(body)


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
