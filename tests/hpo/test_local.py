"""Studies end to end on the embedded default: the real CLI, SQLite, local worker processes."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from hpo.storage import Storage
from tests.cli import run_hpo as _hpo
from tests.cli import start_hpo, wait_for_complete
from tests.invariants import check_study

STUDY = """\
name: {name}
seed: 7
dataset: {{kind: digits, subset: 600, val_fraction: 0.25, test_fraction: 0.2}}
model: {{hidden_sizes: [32, 32], activation: relu, weight_init: he}}
training: {{optimizer: sgd, lr: 0.05, epochs: {epochs}, batch_size: 50}}
search:
  sampler: {sampler}
  stages:
    - {{trials: {t0}, epochs: 3}}
    - {{trials: {t1}}}
  parameters:
    lr: {{type: float, low: 1.0e-4, high: 1.0, log: true}}
    weight_decay: {{type: float, low: 1.0e-8, high: 1.0e-2, log: true}}
"""


def _study_file(
    tmp_path: Path, name: str = "s", *, sampler: str = "narrowing", t0: int = 12, t1: int = 8, epochs: int = 5
) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(STUDY.format(name=name, sampler=sampler, t0=t0, t1=t1, epochs=epochs))
    return path


def test_two_stage_study_completes_with_narrowed_ranges(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'hpo.db'}"
    proc = _hpo("submit", str(_study_file(tmp_path)), "--db", db, "--workers", "2", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "database is locked" not in proc.stderr
    storage = Storage(db)
    facts = check_study(storage, "s")
    stages = storage.stages(facts["study"].id)
    assert len(stages) == 2
    first, second = (json.loads(s.space) for s in stages)
    assert first != second  # narrowed once
    test = facts["study"].test_result
    assert test["source"] == "model" and 0 < test["test_acc"] <= 1
    verify = _hpo("verify", "s", "--db", db)  # the saved network is what its seed retrains (I3)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # `hpo explain` says why stage 2 has its ranges: the rule, re-applied, gives the stored ones.
    explained = json.loads(_hpo("explain", "s", "--db", db, "-f", "json").stdout)
    assert [e["stage"] for e in explained] == [2] and explained[0]["matches_stored_ranges"]
    lr = explained[0]["params"]["lr"]
    assert lr["new"] == next(p["distribution"] for p in second["params"] if p["name"] == "lr")
    assert len(lr["top_values"]) == 3 and lr["n_trials"] == 12  # a quarter of 12; top_cut keeps min_top
    table = _hpo("explain", "s", "--db", db)
    assert table.returncode == 0 and "lr" in table.stdout and "of 12" in table.stdout
    # the best trials are printed on stdout as data
    assert "best trials" in proc.stdout


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_optuna_samplers_run_the_same_study_file(tmp_path: Path, sampler: str) -> None:
    db = f"sqlite:///{tmp_path / 'hpo.db'}"
    proc = _hpo(
        "submit",
        str(_study_file(tmp_path, sampler=sampler, t0=6, t1=6)),
        "--db",
        db,
        "-w",
        "2",
        "--no-progress",
    )
    assert proc.returncode == 0, proc.stderr
    check_study(Storage(db), "s")


def test_many_processes_on_one_sqlite_file(tmp_path: Path) -> None:
    """Four workers on two cores hammer one SQLite file: no "database is locked" reaches the user."""
    db = f"sqlite:///{tmp_path / 'hpo.db'}"
    proc = _hpo(
        "submit", str(_study_file(tmp_path, t0=40, t1=20, epochs=2)), "--db", db, "-w", "4", "--no-progress"
    )
    assert proc.returncode == 0, proc.stderr
    assert "locked" not in proc.stderr.lower()
    check_study(Storage(db), "s", rerun=1)


def test_resubmitting_is_a_no_op_and_a_changed_spec_is_an_error(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'hpo.db'}"
    path = _study_file(tmp_path, t0=4, t1=4, epochs=2)
    assert _hpo("submit", str(path), "--db", db, "--no-progress").returncode == 0
    again = _hpo("submit", str(path), "--db", db, "--no-progress")
    assert again.returncode == 0
    assert "already exists" in again.stderr
    changed = _study_file(tmp_path, t0=5, t1=4, epochs=2)
    proc = _hpo("submit", str(changed), "--db", db, "--no-progress")
    assert proc.returncode == 2
    assert "different spec" in proc.stderr
    assert len(Storage(db).trials(Storage(db).get_study("s").id)) == 8  # nothing written


def test_bad_study_writes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(_study_file(tmp_path).read_text().replace("log: true}", "log: true, lerning: 1}", 1))
    proc = _hpo("submit", str(bad), "--db", f"sqlite:///{tmp_path / 'x.db'}")
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.db").exists()


def test_ctrl_c_leaves_a_consistent_database_and_resume_finishes(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'hpo.db'}"
    path = _study_file(tmp_path, t0=30, t1=10, epochs=40)
    proc = start_hpo("submit", str(path), "--db", db, "-w", "2", "--no-progress", new_session=True)
    storage = Storage(db)
    wait_for_complete(db, "s", 3)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "hpo resume s" in err
    study = storage.get_study("s")
    assert storage.counts(study.id).get("RUNNING", 0) == 0  # every claim released
    assert study.state == "INTERRUPTED" and "hpo resume s" in (study.reason or "")
    for command in ("studies", "status"):  # what a user sees says so, and how to resume it
        shown = _hpo(command, *(["s"] if command == "status" else []), "--db", db, "-f", "json")
        assert '"INTERRUPTED"' in shown.stdout, shown.stdout
    done_before = storage.counts(study.id).get("COMPLETE", 0)
    assert 0 < done_before < 40
    proc2 = _hpo("resume", "s", "--db", db, "-w", "2", "--no-progress")
    assert proc2.returncode == 0, proc2.stderr
    check_study(storage, "s", rerun=1)


def test_query_commands(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'hpo.db'}"
    assert (
        _hpo(
            "submit", str(_study_file(tmp_path, t0=6, t1=4, epochs=4)), "--db", db, "--no-progress"
        ).returncode
        == 0
    )
    best = json.loads(_hpo("best", "s", "--top", "3", "-f", "json", "--db", db).stdout)
    assert len(best["best"]) == 3 and best["best"][0]["rank"] == 1
    assert best["best"][0]["value"] >= best["best"][1]["value"] >= best["best"][2]["value"]
    assert best["test_result"]["trial_number"] == best["best"][0]["trial"]
    trials = json.loads(_hpo("trials", "s", "-f", "json", "--db", db).stdout)
    assert [t["trial"] for t in trials] == list(range(10))
    assert [t["epochs_trained"] for t in trials] == [3] * 6 + [4] * 4  # each its stage's epochs
    status = json.loads(_hpo("status", "s", "-f", "json", "--db", db).stdout)
    assert status["state"] == "COMPLETE" and len(status["stages"]) == 2
    csv_text = _hpo("export", "s", "-f", "csv", "--db", db).stdout
    assert csv_text.splitlines()[0].startswith("trial,stage,state,value")
    assert len(csv_text.splitlines()) == 11
    studies = json.loads(_hpo("studies", "-f", "json", "--db", db).stdout)
    assert [s["name"] for s in studies] == ["s"]
    png = tmp_path / "curves.png"
    plot = _hpo("plot", "s", "-o", str(png), "--db", db)
    assert plot.returncode == 0, plot.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    curves_only = tmp_path / "book.png"  # the book's figure alone, as bench/reproduce_book.py draws it
    assert _hpo("plot", "s", "--no-search", "-k", "4", "-o", str(curves_only), "--db", db).returncode == 0
    from PIL import Image

    with Image.open(png) as full, Image.open(curves_only) as panels:
        assert panels.height < full.height / 2  # one row of 4 panels, without the search panel
    assert _hpo("delete", "s", "--yes", "--db", db).returncode == 0
    assert _hpo("best", "s", "--db", db).returncode == 2


def test_submit_never_touches_a_copied_optuna_study(tmp_path: Path) -> None:
    """A user's copy of an hpo study (it carries ``hpo_study_id``) keeps its name, trials and all."""
    import optuna

    db = f"sqlite:///{tmp_path / 'hpo.db'}"
    assert (
        _hpo(
            "submit", str(_study_file(tmp_path, t0=2, t1=1, epochs=1)), "--db", db, "--no-progress"
        ).returncode
        == 0
    )
    optuna.copy_study(from_study_name="s", from_storage=db, to_storage=db, to_study_name="mine")
    optuna.load_study(study_name="mine", storage=db).enqueue_trial({"lr": 0.1})
    before = [(t.number, t.state, t.params) for t in optuna.load_study(study_name="mine", storage=db).trials]
    proc = _hpo(
        "submit", str(_study_file(tmp_path, "mine", t0=2, t1=1, epochs=1)), "--db", db, "--no-progress"
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: an Optuna study named 'mine' already exists in this database and is not one of hpo's; "
        "hpo never changes it: choose another name"
    ]
    assert Storage(db).find_study("mine") is None
    assert [
        (t.number, t.state, t.params) for t in optuna.load_study(study_name="mine", storage=db).trials
    ] == before


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_local_workers_die_with_their_parent(tmp_path: Path, sig: signal.Signals) -> None:
    """SIGKILL or SIGTERM of `hpo submit` (not of its process group): no worker lives on to finish
    the study in the background; their trials are released, and `hpo resume` finishes it."""
    from tests.workers.conftest import alive, children

    db = f"sqlite:///{tmp_path / 'hpo.db'}"
    path = _study_file(tmp_path, t0=30, t1=10, epochs=40)
    proc = start_hpo("submit", str(path), "--db", db, "-w", "2", "--no-progress", new_session=True)
    storage = Storage(db)
    wait_for_complete(db, "s", 3, also=lambda: len(children(proc.pid)) == 2)
    study = storage.get_study("s")
    workers = children(proc.pid)
    assert len(workers) == 2
    os.kill(proc.pid, sig)  # the parent alone: its workers must notice
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == (-signal.SIGKILL if sig == signal.SIGKILL else 130), err
    deadline = time.monotonic() + 40  # an epoch, at most the workers' grace
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in workers)
    counts = storage.counts(study.id)
    assert counts.get("RUNNING", 0) == 0  # released at their epoch's end, not left to expire
    assert counts.get("COMPLETE", 0) < 40
    # SIGTERM: the run says it was interrupted; SIGKILL: it could not, but its runner is gone.
    assert storage.get_study("s").state == ("RUNNING" if sig == signal.SIGKILL else "INTERRUPTED")
    assert '"INTERRUPTED"' in _hpo("studies", "--db", db, "-f", "json").stdout
    time.sleep(1)
    assert storage.counts(study.id) == counts  # nothing goes on in the background
    resumed = _hpo("resume", "s", "--db", db, "-w", "2", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    check_study(storage, "s", rerun=1)
