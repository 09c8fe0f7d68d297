"""Time the read commands on a large study: ``hpo best``, ``status``, ``trials``, ``export``.

Usage::

    python bench/reads.py [--trials 10000 --trials 100000] [--db URL] [--sqlite] [--no-dashboard]
                          [--repeats 3] [--json PATH]

For each size N, a study ``bench-reads-N`` of N trials is built once (kept, and reused by the next
run while it is complete) on ``--db`` (default: a PostgreSQL database of its own, created if
missing), and with ``--sqlite`` also in ``bench/.reads-N.db``. It is a one-stage random study
submitted by :func:`hpo.orchestration.submit_study` (its sampler draws the params); every trial is
then claimed and finished with the statements ``Storage.claim_with_study`` and ``Storage.finish``
execute, 500 trials to a transaction (:func:`_finish_batch`), with a 50-epoch curve of train/val
loss and accuracy and seconds per epoch, ``epochs_trained`` and ``train_seconds``; the Optuna view
is written by ``Storage.mirror`` every 2000 trials (the batch path workers take) and the study
completed by ``advance_study``. Only the training is skipped: the curves are drawn at random,
seeded by trial id.

Then, as a user waits for them (a new process, the real CLI, from start to exit), with the peak
RSS and CPU seconds of each (``/usr/bin/time``)::

    hpo best NAME; hpo status NAME; hpo trials NAME -f json > /dev/null; hpo trials NAME > /dev/null
    hpo export NAME -f json -o FILE; hpo export NAME -f csv -o FILE

the statements ``best`` and ``status`` issue are captured in this process, timed and EXPLAINed on
PostgreSQL (a sequential scan of ``hpo_trials`` is reported); the Optuna view is compared with
``hpo trials -f json`` (numbers, params, values, states); and optuna-dashboard (when installed)
is started on the database and the API calls its page makes to load the study are timed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hpo.storage import Storage

ROOT = Path(__file__).resolve().parents[1]
# bench/queue.py is named like the standard library's `queue` (which psycopg imports): take this
# directory off the path, which `python bench/reads.py` put first.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

DEFAULT_DB = "postgresql+psycopg://postgres@127.0.0.1:5432/hpo_bench_reads"
EPOCHS = 50
BATCH = 500
MIRROR_EVERY = 2000
TARGETS = {"best_status_seconds": 0.5, "stream_peak_rss_mb": 300.0}


def _spec(name: str, trials: int) -> dict[str, Any]:
    return {
        "name": name,
        "seed": 0,
        "dataset": {"kind": "digits", "subset": 200, "val_fraction": 0.2, "test_fraction": 0.2},
        "model": {"hidden_sizes": [16], "activation": "relu", "weight_init": "he"},
        "training": {"optimizer": "sgd", "batch_size": 100, "epochs": EPOCHS},
        "search": {
            "sampler": "random",
            "stages": [{"trials": trials, "epochs": EPOCHS}],
            "parameters": {
                "lr": {"type": "float", "low": 1e-4, "high": 1.0, "log": True},
                "weight_decay": {"type": "float", "low": 1e-8, "high": 1e-2, "log": True},
            },
        },
        "objective": {"metric": "val_acc", "reduce": "final"},
        "limits": {"max_failed_trials": trials},
    }


def _curves(rng: random.Random) -> tuple[list[dict[str, Any]], dict[int, float], float]:
    """A 50-epoch curve as the engine records one (``EpochRecord.as_dict``), its intermediate
    values and its final val_acc."""
    records, intermediate = [], {}
    loss, acc = 2.3, 0.1
    for epoch in range(1, EPOCHS + 1):
        loss *= rng.uniform(0.9, 1.0)
        acc = min(1.0, acc + rng.uniform(0.0, 0.03))
        val_acc = round(acc - rng.uniform(0.0, 0.05), 6)
        records.append(
            {
                "epoch": epoch,
                "train_loss": loss,
                "train_acc": acc,
                "val_loss": loss * rng.uniform(1.0, 1.2),
                "val_acc": val_acc,
                "seconds": round(rng.uniform(0.001, 0.01), 6),
            }
        )
        intermediate[epoch] = val_acc
    return records, intermediate, records[-1]["val_acc"]


def ensure_database(url: str) -> None:
    """Create the PostgreSQL database of ``url`` if it is missing, and upgrade it."""
    import sqlalchemy as sa

    from hpo.storage import Storage

    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "postgresql":
        admin = sa.create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            found = conn.execute(
                sa.text("select 1 from pg_database where datname = :d"), {"d": parsed.database}
            )
            if found.first() is None:
                conn.execute(sa.text(f'create database "{parsed.database}"'))
        admin.dispose()
    Storage(url).upgrade()


def _finish_batch(storage: Storage, study_id: int, ids: list[int]) -> None:
    """Claim and finish trials ``ids`` in one transaction, with the statements
    ``Storage.claim_with_study`` and ``Storage.finish`` execute (a worker runs them in a
    transaction of their own per trial: ~25 ms a trial on this shared machine, a 100k study in
    most of an hour)."""
    from hpo.storage import TrialOutcome, TrialState
    from hpo.storage._trial_states import _claim_statement, _finish_statement

    postgresql = not storage.is_sqlite
    claim, finish = _claim_statement(postgresql, False), _finish_statement(True)
    with storage._write() as conn:
        for trial_id in ids:
            row = conn.execute(claim, {"trial_id": trial_id, "claim_worker": "bench", "claim_lease": 600.0})
            attempts = row.mappings().one()["attempts"]
            curves, intermediate, value = _curves(random.Random(trial_id))
            seconds = sum(r["seconds"] for r in curves)
            outcome = TrialOutcome(
                TrialState.COMPLETE,
                value,
                None,
                curves,
                intermediate,
                epochs_trained=EPOCHS,
                train_seconds=seconds,
            )
            params = {"trial_id": trial_id, "held_worker": "bench", "held_attempt": attempts}
            params |= {f"final_{column}": v for column, v in outcome.columns().items()}
            conn.execute(finish, params).one()


def build(url: str, trials: int) -> tuple[str, float | None]:
    """The study of ``trials`` trials on ``url``: reused if complete, else (re)built.

    Returns:
        Its name, and the seconds the build took (None: reused).
    """
    from hpo.orchestration import advance_study, submit_study
    from hpo.spec import StudySpec
    from hpo.storage import Storage, StudyNotFoundError

    name = f"bench-reads-{trials}"
    storage = Storage(url)
    found = storage.find_study(name)
    if found is not None and found.state == "COMPLETE" and storage.counts(found.id)["COMPLETE"] == trials:
        return name, None
    with contextlib.suppress(StudyNotFoundError):
        storage.delete_study(name)
    start = time.perf_counter()
    study, _ = submit_study(storage, StudySpec.model_validate(_spec(name, trials)))
    ids = [t.id for t in storage.trials(study.id, states=("PENDING",))]
    for first in range(0, len(ids), BATCH):
        _finish_batch(storage, study.id, ids[first : first + BATCH])
        if (first + BATCH) % MIRROR_EVERY == 0:
            # The Optuna view written in batches as trials finish, as workers' advance_study does.
            storage.mirror(study.id)
            print(
                f"  {name}: {first + BATCH} trials, {time.perf_counter() - start:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    advance_study(storage, study.id)  # mirrors the rest, scores the best, completes it
    state = storage.get_study(name).state
    if state != "COMPLETE":
        raise SystemExit(f"{name} ended {state}, not COMPLETE")
    seconds = time.perf_counter() - start
    _vacuum(url)
    return name, seconds


def _vacuum(url: str) -> None:
    """VACUUM ANALYZE (the state a database is in once autovacuum has been by): statistics for
    the planner, and the visibility map that lets index-only scans skip the heap."""
    import sqlalchemy as sa

    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text("VACUUM ANALYZE" if engine.dialect.name == "postgresql" else "ANALYZE"))
    engine.dispose()


def _hpo() -> list[str]:
    script = Path(sys.executable).with_name("hpo")
    return [str(script)] if script.exists() else [sys.executable, "-m", "hpo"]


def run_timed(args: list[str], url: str, code: Path | None = None) -> dict[str, Any]:
    """Run ``hpo ARGS`` on ``url`` (with the hpo of ``code``, another checkout, if given); its
    wall seconds from start to exit and its peak RSS (MB)."""
    env = dict(os.environ, HPO_DATABASE_URL=url, PYTHONPATH=str(code or ROOT))
    env.pop("HPO_BROKER_URL", None)
    # The peak RSS from /usr/bin/time, a small parent: a child's ru_maxrss starts at its parent's
    # RSS when it was forked, so os.wait4 from this (large) process would report ours.
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        hpo = [sys.executable, "-m", "hpo"] if code else _hpo()  # PYTHONPATH first: that checkout's hpo
        cmd = ["/usr/bin/time", "-f", "%U %S %M", "-o", rss.name, *hpo, *args]
        start = time.perf_counter()
        proc = subprocess.run(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=code or ROOT, check=False
        )
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"hpo {' '.join(args)} exited {proc.returncode}:\n{proc.stderr.decode()}")
        user, system, kb = rss.read().split()[-3:]
    # CPU seconds too: on a machine that others load, the wall time mostly measures the wait.
    cpu = round(float(user) + float(system), 3)
    return {"seconds": round(seconds, 3), "cpu_seconds": cpu, "peak_rss_mb": round(int(kb) / 1024, 1)}


QUICK = ("best", "best_top10_json", "status", "status_json")
"""The commands run ``--repeats`` times (the others read every trial, and run once)."""


def time_commands(
    url: str, name: str, repeats: int, code: Path | None = None, only: str = ""
) -> dict[str, Any]:
    """Each read command (those of the comma-separated keys ``only``), the best of ``repeats`` runs
    for the quick ones; the peak RSS of that run and the largest of all."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="hpo-bench-reads-") as tmp:
        commands = {
            "best": ["best", name],
            "best_top10_json": ["best", name, "--top", "10", "-f", "json"],
            "status": ["status", name],
            "status_json": ["status", name, "-f", "json"],
            "trials_json": ["trials", name, "-f", "json"],
            "trials_csv": ["trials", name, "-f", "csv"],
            "trials_table": ["trials", name],
            "export_json": ["export", name, "-f", "json", "-o", f"{tmp}/{name}.json"],
            "export_csv": ["export", name, "-f", "csv", "-o", f"{tmp}/{name}.csv"],
        }
        for key, args in commands.items():
            if only and key not in only.split(","):
                continue
            runs = [run_timed(args, url, code) for _ in range(repeats if key in QUICK else 1)]
            best = min(runs, key=lambda r: r["seconds"])
            out[key] = {**best, "peak_rss_mb_max": max(r["peak_rss_mb"] for r in runs)}
            print(
                f"  {key}: {best['seconds']:.3f} s, {best['peak_rss_mb']:.0f} MB", file=sys.stderr, flush=True
            )
        for fmt in ("json", "csv"):
            if f"export_{fmt}" in out:
                out[f"export_{fmt}"]["file_mb"] = round(Path(f"{tmp}/{name}.{fmt}").stat().st_size / 2**20, 1)
    return out


@contextlib.contextmanager
def _captured(url: str) -> Iterator[list[tuple[str, Any]]]:
    """The statements this process sends to ``url`` inside the block, with their parameters."""
    import sqlalchemy as sa

    from hpo.storage import create_engine

    seen: list[tuple[str, Any]] = []

    def listen(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        seen.append((statement, parameters))

    engine = create_engine(url)
    sa.event.listen(engine, "before_cursor_execute", listen)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", listen)


def _reads(url: str, name: str) -> dict[str, Any]:
    """What ``hpo best`` and ``hpo status`` read and format, as calls in this process."""
    from hpo.cli._query import _status_doc, best_rows
    from hpo.storage import Storage

    storage = Storage(url)
    return {"best": lambda: best_rows(storage, name, 1), "status": lambda: _status_doc(storage, name)}


def in_process(url: str, name: str, repeats: int) -> dict[str, float]:
    """Seconds of what ``best`` and ``status`` do once hpo is imported (the reads and the
    formatting, not Python's start): the best of ``repeats`` after one warm-up call."""
    out = {}
    for command, call in _reads(url, name).items():
        call()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        out[f"{command}_seconds"] = round(min(times), 4)
    return out


def explain(url: str, name: str) -> dict[str, Any]:
    """EXPLAIN (ANALYZE) every statement on ``hpo_trials`` that ``best`` and ``status`` issue:
    whether any scans the table sequentially, and the slowest one's time."""
    from hpo.storage import create_engine

    out: dict[str, Any] = {}
    for command, call in _reads(url, name).items():
        with _captured(url) as seen:
            call()
        plans = []
        raw = create_engine(url).raw_connection()
        try:
            with raw.cursor() as cur:
                for statement, params in seen:
                    if "hpo_trials" not in statement or not statement.lstrip().upper().startswith("SELECT"):
                        continue
                    cur.execute("EXPLAIN (ANALYZE, FORMAT TEXT) " + statement, params)
                    plan = "\n".join(r[0] for r in cur.fetchall())
                    ms = float(plan.rsplit("Execution Time:", 1)[1].split()[0])
                    plans.append({"statement": " ".join(statement.split())[:160], "ms": ms, "plan": plan})
            raw.rollback()
        finally:
            raw.close()
        out[command] = {
            "statements": len(plans),
            "seq_scan_of_hpo_trials": any("Seq Scan on hpo_trials" in p["plan"] for p in plans),
            "total_ms": round(sum(p["ms"] for p in plans), 3),
            "plans": plans,
        }
    return out


def optuna_view_equal(url: str, name: str) -> dict[str, Any]:
    """Compare ``optuna.load_study(...).trials`` with ``hpo trials NAME -f json``."""
    import optuna

    env = dict(os.environ, HPO_DATABASE_URL=url, PYTHONPATH=str(ROOT))
    proc = subprocess.run([*_hpo(), "trials", name, "-f", "json"], env=env, capture_output=True, check=True)
    ours = {r["trial"]: r for r in json.loads(proc.stdout)}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    start = time.perf_counter()
    theirs = optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
    load_seconds = time.perf_counter() - start
    mismatches = []
    by_number = {ot.user_attrs["hpo_number"]: ot for ot in theirs}
    if set(by_number) != set(ours):
        mismatches.append(f"numbers differ: {len(by_number)} Optuna trials, {len(ours)} hpo trials")
    for number, row in ours.items():
        ot = by_number.get(number)
        if ot is None:
            continue
        params = {k: row[k] for k in ot.params}
        if ot.state.name != row["state"] or ot.value != row["value"] or ot.params != params:
            mismatches.append(f"trial {number}")
        elif set(ot.params) != {"lr", "weight_decay"}:
            mismatches.append(f"trial {number}: params {sorted(ot.params)}")
    return {
        "equal": not mismatches,
        "trials": len(theirs),
        "mismatches": mismatches[:5],
        "optuna_get_trials_seconds": round(load_seconds, 2),
    }


def before(url: str, name: str, args: argparse.Namespace) -> dict[str, Any]:
    """The commands as the code in ``args.before`` (a checkout from before revision 0008) runs
    them: the database is taken back to 0007 for the run, and upgraded again after."""
    from alembic import command

    from hpo.storage import Storage, dispose_engines
    from hpo.storage._migrate import alembic_config

    dispose_engines()
    command.downgrade(alembic_config(url), "0007")
    _vacuum(url)
    try:
        print("  before:", file=sys.stderr, flush=True)
        return time_commands(url, name, args.repeats, args.before, args.only)
    finally:
        Storage(url).upgrade()
        _vacuum(url)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, timeout: float = 900) -> tuple[float, int]:
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        size = len(resp.read())
    return time.perf_counter() - start, size


def dashboard(url: str, names: list[str]) -> dict[str, Any]:
    """Start optuna-dashboard on ``url``; per study, the seconds its page's API calls take."""
    exe = shutil.which("optuna-dashboard") or str(Path(sys.executable).with_name("optuna-dashboard"))
    if not Path(exe).exists():
        return {"skipped": "optuna-dashboard is not installed (pip install optuna-dashboard)"}
    port = _free_port()
    proc = subprocess.Popen(
        [exe, url, "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                studies_s, _ = _get(f"{base}/api/studies")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        studies = json.loads(urllib.request.urlopen(f"{base}/api/studies", timeout=600).read())[
            "study_summaries"
        ]
        ids = {s["study_name"]: s["study_id"] for s in studies}
        out: dict[str, Any] = {
            "version": _dashboard_version(exe),
            "list_studies_seconds": round(studies_s, 3),
        }
        for name in names:
            sid = ids[name]
            # What the study page fetches: the study with its trials, then its parameter importances.
            first, size = _get(f"{base}/api/studies/{sid}?after=0")
            again, _ = _get(f"{base}/api/studies/{sid}?after=0")
            try:  # fANOVA on every trial: it may take longer than a user waits
                importance: float | None = _get(f"{base}/api/studies/{sid}/param_importances", 300)[0]
            except TimeoutError:
                importance = None
            out[name] = {
                "study_seconds_first": round(first, 2),
                "study_seconds_again": round(again, 2),
                "param_importances_seconds": None if importance is None else round(importance, 2),
                "response_mb": round(size / 2**20, 1),
                "server_rss_mb": _rss_mb(proc.pid),
            }
            print(f"  dashboard {name}: {out[name]}", file=sys.stderr, flush=True)
        return out
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


def _dashboard_version(exe: str) -> str:
    proc = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
    return proc.stdout.strip()


def _rss_mb(pid: int) -> float:
    """The peak RSS (VmHWM) of a running process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, action="append", help="study sizes (default: 10000 and 100000)")
    parser.add_argument("--db", default=DEFAULT_DB)
    parser.add_argument("--sqlite", action="store_true", help="also on a SQLite file per size")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each command (best time kept)")
    parser.add_argument("--no-dashboard", action="store_true")
    parser.add_argument("--dashboard-only", action="store_true", help="only optuna-dashboard's load times")
    parser.add_argument(
        "--build-only", action="store_true", help="build (or check) the studies, time nothing"
    )
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--before",
        type=Path,
        default=None,
        metavar="DIR",
        help="also time the commands with the hpo of this checkout, the database taken back to 0007",
    )
    parser.add_argument(
        "--no-checks", action="store_true", help="time the commands only (no plans, no Optuna)"
    )
    parser.add_argument("--only", default="", help="time only these commands (keys, comma-separated)")
    args = parser.parse_args()
    sizes = args.trials or [10_000, 100_000]
    databases = [args.db] + [f"sqlite:///{ROOT / 'bench' / f'.reads-{n}.db'}" for n in sizes if args.sqlite]
    result: dict[str, Any] = {
        "timestamp_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "epochs": EPOCHS,
        "targets": TARGETS,
        "runs": [],
    }
    for n in [] if args.dashboard_only else sizes:
        for url in databases:
            if url.startswith("sqlite") and f"reads-{n}.db" not in url:
                continue
            backend = url.split(":", 1)[0].split("+")[0]
            print(f"{backend}, {n} trials", file=sys.stderr, flush=True)
            ensure_database(url)
            name, build_seconds = build(url, n)
            print(
                f"  {name}: built in {build_seconds} s" if build_seconds else f"  {name}: reused",
                file=sys.stderr,
            )
            if args.build_only:
                continue
            run: dict[str, Any] = {
                "backend": backend,
                "trials": n,
                "study": name,
                "build_seconds": build_seconds,
            }
            run["commands"] = time_commands(url, name, args.repeats, only=args.only)
            if args.no_checks:
                result["runs"].append(run)
                continue
            run["in_process"] = in_process(url, name, args.repeats)
            if args.before:
                run["before"] = before(url, name, args)
            if backend == "postgresql":
                run["explain"] = explain(url, name)
            run["optuna_view"] = optuna_view_equal(url, name)
            cmds = run["commands"]
            seconds = [cmds[k]["seconds"] for k in ("best", "status") if k in cmds]
            rss = [
                cmds[k]["peak_rss_mb_max"] for k in ("trials_json", "export_json", "export_csv") if k in cmds
            ]
            run["met"] = {
                "best_status": max(seconds, default=0) < TARGETS["best_status_seconds"],
                "stream_rss": max(rss, default=0) < TARGETS["stream_peak_rss_mb"],
            }
            result["runs"].append(run)
    if not args.no_dashboard:
        print("optuna-dashboard", file=sys.stderr, flush=True)
        result["dashboard"] = dashboard(args.db, [f"bench-reads-{n}" for n in sizes])
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
