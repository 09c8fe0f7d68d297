"""The command line as a user meets it: one line for every error, one exit-code table, help that
reads well, and the conveniences (--version, completion, --set, status --watch, relative paths).

Exit codes (README): 0 done, 1 the study failed or was cancelled (or a service is down), 2 bad
input or usage, 130 interrupted.
"""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest

from hpo.storage import Storage, TrialState
from tests.cli import ROOT, run_hpo, start_hpo, wait_for_complete

STUDY = """\
name: {name}
seed: 1
dataset: {{kind: digits, subset: 300}}
model: {{hidden_sizes: [16]}}
training: {{epochs: {epochs}, batch_size: {batch}}}
search:
  trials: {trials}
  parameters:
    lr: {{type: float, low: 1.0e-3, high: 1.0, log: true}}
"""


def _study(tmp: Path, name: str = "s", *, trials: int = 4, epochs: int = 2, batch: int = 50) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(STUDY.format(name=name, trials=trials, epochs=epochs, batch=batch))
    return path


@pytest.fixture(scope="module")
def done_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database with one complete study ``s``."""
    tmp = tmp_path_factory.mktemp("done")
    db = f"sqlite:///{tmp / 'hpo.db'}"
    proc = run_hpo("submit", str(_study(tmp)), "--db", db, "--no-progress", "-w", "1")
    assert proc.returncode == 0, proc.stderr
    return db


def _one_line(proc: subprocess.CompletedProcess[str], code: int) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


# Every command with a bad argument, option, value, name or path: one line, exit 2.
BAD = [
    ("submit",),  # missing argument
    ("submit", "nope.yaml"),
    ("submit", "{study}", "--workers", "0"),
    ("submit", "{study}", "--bogus"),
    ("submit", "{study}", "--set", "noequals"),
    ("validate", "{study}", "--set", "search.trials=0"),
    ("resume", "nope", "--db", "{db}"),
    ("resume", "s", "--db", "{db}"),  # complete: nothing to resume
    ("cancel", "s", "--db", "{db}"),  # complete: nothing to cancel
    ("delete", "nope", "--yes", "--db", "{db}"),
    ("delete", "s", "--db", "{db}"),  # no terminal to confirm on: --yes is needed
    ("studies", "--format", "xml", "--db", "{db}"),
    ("status", "nope", "--db", "{db}"),
    ("best", "s", "--top", "0", "--db", "{db}"),
    ("trials", "s", "--state", "BOGUS", "--db", "{db}"),
    ("trials", "s", "--top", "x", "--db", "{db}"),
    ("export", "s", "-o", "/nonexistent/dir/t.json", "--db", "{db}"),
    ("export", "s", "-o", "{tmp}", "--db", "{db}"),  # a directory
    ("plot", "s", "-o", "/nonexistent/dir/x.png", "--db", "{db}"),
    ("plot", "nope", "--db", "{db}"),
    ("train", "nope.yaml"),
    ("worker", "--concurrency", "0"),
    ("db", "nope"),
    ("schema", "extra"),
    ("--db", "notaurl", "studies"),  # an option of no command
    ("studies", "--db", "notaurl"),
]


@pytest.mark.parametrize("args", BAD, ids=[" ".join(a) for a in BAD])
def test_bad_arguments_are_one_line_and_exit_2(args: tuple[str, ...], done_db: str, tmp_path: Path) -> None:
    study = _study(tmp_path)
    filled = [a.format(db=done_db, study=study, tmp=tmp_path) for a in args]
    _one_line(run_hpo(*filled, cwd=tmp_path), 2)
    assert not (tmp_path / "hpo.db").exists()  # nothing written


def test_usage_errors_name_the_command_help(tmp_path: Path) -> None:
    line = _one_line(run_hpo("trials", "x", "--bogus", cwd=tmp_path), 2)
    assert "No such option: --bogus" in line and "`hpo trials --help`" in line


def test_an_internal_error_is_one_line_naming_hpo_debug(tmp_path: Path) -> None:
    """A bug shows no traceback unless asked: one line naming HPO_DEBUG=1 (here: a corrupt spec)."""
    db = tmp_path / "hpo.db"
    assert (
        run_hpo("submit", str(_study(tmp_path)), "--db", f"sqlite:///{db}", "--no-progress").returncode == 0
    )
    import sqlite3

    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE hpo_studies SET spec = '{\"broken\": true}'")
    line = _one_line(run_hpo("status", "s", "--db", f"sqlite:///{db}"), 1)
    assert line.startswith("error: internal error: ") or "HPO_DEBUG=1" in line or "spec" in line


def test_help_reads_well() -> None:
    top = run_hpo("--help")
    assert top.returncode == 0
    commands = re.findall(r"^│ (\w+)\s", top.stdout, flags=re.MULTILINE)
    assert commands[0] == "submit", commands
    assert "Run a study" in top.stdout and "Results" in top.stdout
    names = [*sorted(set(commands) - {"db"}), "db upgrade"]
    for name in names:
        page = run_hpo(*name.split(), "--help")
        assert page.returncode == 0, (name, page.stderr)
        assert "<bool>" not in page.stdout, name
        for option in ("--db", "--broker"):
            if f"{option} " in page.stdout:
                assert re.search(rf"{option}\s+URL", page.stdout), (name, option)


def test_version_and_completion() -> None:
    proc = run_hpo("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"hpo {version('hpo-narrowing')}"
    completion = run_hpo("--show-completion", "bash")
    assert completion.returncode == 0 and "complete" in completion.stdout


def test_trial_state_choices_are_the_storage_states() -> None:
    from hpo.cli._query import TrialStateChoice

    assert [c.value for c in TrialStateChoice] == [s.value for s in TrialState]


def test_set_overrides_are_checked_and_stored(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'hpo.db'}"
    path = _study(tmp_path, trials=4)
    proc = run_hpo(
        "submit", str(path), "--db", db, "--no-progress", "-w", "1",
        "--set", "search.trials=6", "--set", "seed=3", "--set", "name=rerun",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    storage = Storage(db)
    study = storage.get_study("rerun")
    spec = json.loads(study.spec)
    assert spec["seed"] == 3 and spec["search"]["trials"] == 6
    assert len(storage.trials(study.id)) == 6
    bad = _one_line(run_hpo("submit", str(path), "--db", db, "--set", "training.epochs=010"), 2)
    assert "--set training.epochs" in bad and "octal" in bad
    bad = _one_line(run_hpo("validate", str(path), "--set", "model.hidden_sizes=[0]"), 2)
    assert bad.startswith("error: --set model.hidden_sizes=[0]: model.hidden_sizes[0]:"), bad


def test_relative_dataset_path_is_read_from_the_study_files_folder(tmp_path: Path) -> None:
    folder = tmp_path / "studies"
    (folder / "data").mkdir(parents=True)
    rows = "".join(f"{i % 7},{i % 5},{i % 3}\n" for i in range(90))
    (folder / "data" / "d.csv").write_text("a,b,label\n" + rows)
    path = folder / "csv.yaml"
    path.write_text(STUDY.format(name="csv", trials=2, epochs=1, batch=10).replace(
        "{kind: digits, subset: 300}", "{kind: csv, path: data/d.csv}"
    ))  # fmt: skip
    db = f"sqlite:///{tmp_path / 'hpo.db'}"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = run_hpo("submit", str(path), "--db", db, "--no-progress", "-w", "1", cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    status = run_hpo("status", "csv", "--db", db)
    assert f"data: csv at {folder / 'data' / 'd.csv'}" in status.stderr
    doc = json.loads(run_hpo("status", "csv", "--db", db, "-f", "json").stdout)
    assert doc["dataset"]["path"] == str(folder / "data" / "d.csv")


def test_status_export_and_best_account_each_trials_compute(done_db: str) -> None:
    trials = json.loads(run_hpo("trials", "s", "-f", "json", "--db", done_db).stdout)
    assert [t["epochs_trained"] for t in trials] == [2, 2, 2, 2]  # 4 stages of 1 trial, 2 epochs
    assert all(t["train_seconds"] > 0 for t in trials)
    seconds = sum(t["train_seconds"] for t in trials)
    doc = json.loads(run_hpo("status", "s", "-f", "json", "--db", done_db).stdout)
    assert doc["epochs_trained"] == 8 and doc["train_seconds"] == pytest.approx(seconds)
    for stage in doc["stages"]:
        (trial,) = (t for t in trials if t["stage"] == stage["stage"])
        assert (stage["epochs_trained"], stage["train_seconds"]) == (2, trial["train_seconds"])
    table = run_hpo("status", "s", "--db", done_db)
    assert table.returncode == 0, table.stderr
    assert f"compute: 8 epochs trained, {doc['train_seconds']:.3g} s of training\n" in table.stderr
    header = next(line for line in table.stdout.splitlines() if "epochs_trained" in line)
    assert "train_seconds" in header.split("epochs_trained")[1]
    exported = json.loads(run_hpo("export", "s", "--db", done_db).stdout)
    study = exported["study"]
    assert (study["epochs_trained"], study["train_seconds"]) == (8, doc["train_seconds"])
    pairs = [(t["epochs_trained"], t["train_seconds"]) for t in trials]
    assert [(t["epochs_trained"], t["train_seconds"]) for t in exported["trials"]] == pairs
    rows = list(csv.DictReader(io.StringIO(run_hpo("export", "s", "-f", "csv", "--db", done_db).stdout)))
    assert [(int(r["epochs_trained"]), float(r["train_seconds"])) for r in rows] == pairs
    (best,) = json.loads(run_hpo("best", "s", "-f", "json", "--db", done_db).stdout)["best"]
    assert (best["epochs_trained"], best["train_seconds"]) == pairs[best["trial"]]


def test_exit_codes_of_finished_and_stopped_studies(tmp_path: Path, done_db: str) -> None:
    again = run_hpo("submit", str(_study(tmp_path)), "--db", done_db, "--no-progress")
    assert again.returncode == 0, again.stderr  # done
    watch = run_hpo("status", "s", "--watch", "--db", done_db)
    assert watch.returncode == 0, watch.stderr
    db = f"sqlite:///{tmp_path / 'c.db'}"
    runner = start_hpo(
        "submit", str(_study(tmp_path, "c", trials=40, epochs=30, batch=5)), "--db", db, "--no-progress"
    )
    wait_for_complete(db, "c", 1)
    cancelled = run_hpo("cancel", "c", "--db", db)
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stderr
    _, err = runner.communicate(timeout=60)
    assert runner.returncode == 1, err  # the study was cancelled
    assert run_hpo("status", "c", "--watch", "--db", db).returncode == 1
    line = _one_line(run_hpo("cancel", "c", "--db", db), 2)
    assert "cancelled already; there is nothing to cancel" in line


def _pty_run(args: list[str], seconds: float) -> bytes:
    """Run the CLI on a pseudo-terminal for ``seconds`` (or until it exits); its output."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hpo", *args], cwd=ROOT, stdin=follower, stdout=follower, stderr=follower,
        env={**os.environ, "COLUMNS": "120", "TERM": "xterm"},
    )  # fmt: skip
    os.close(follower)
    out = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if ready:
            try:
                out += os.read(leader, 65536)
            except OSError:
                break
    proc.kill()
    proc.wait()
    os.close(leader)
    return out


def test_status_watch_redraws_in_place_on_a_terminal_and_prints_changes_elsewhere(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'hpo.db'}"
    runner = start_hpo(
        "submit",
        str(_study(tmp_path, trials=12, epochs=40, batch=10)),
        "--db",
        db,
        "--no-progress",
        "-w",
        "1",
    )
    try:
        wait_for_complete(db, "s", 1)
        shown = _pty_run(["status", "s", "--watch", "--db", db], 4.0)
        # rich Live redraws in place: cursor-up / erase-line sequences, and the best so far and ETA.
        assert b"\x1b[" in shown and (b"\x1b[2K" in shown or b"\x1b[1A" in shown), shown[-500:]
        text = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", shown).decode(errors="replace")
        assert "best: val_acc" in text and "ETA" in text
    finally:
        _, err = runner.communicate(timeout=120)
    assert runner.returncode == 0, err
    piped = run_hpo("status", "s", "--watch", "--db", db)
    lines = [line for line in piped.stderr.splitlines() if line.startswith("s: ")]
    assert lines and len(lines) == len(set(lines))  # one line per change, never the same twice
