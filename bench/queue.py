"""Time studies run through the queue: Celery + Redis + PostgreSQL with real `hpo worker` processes.

Usage::

    python bench/queue.py [--trials 1000] [--skip-book] [--repeats 1] [--json PATH]

Two benchmarks, both against the services of ``--broker`` (a dedicated Redis db) and ``--db`` (a
database of its own, created if missing and vacuumed before the clock starts):

1. **Overhead per trial.** A one-stage random study of ``--trials`` trivially cheap trials (digits,
   100 images, no hidden layer, one epoch of one batch: ~1 ms of training) is submitted from this
   process (``submit_study`` + ``dispatch_trials``, as ``hpo submit --broker`` does) to one
   already-running ``hpo worker -c 1``. Every trial takes the real path: a message per trial, the
   worker claims it (``Storage.claim_with_study``), trains, records it (``Storage.finish``, which
   reads the study's progress in the same transaction) and advances the study (``advance``, which
   writes the Optuna view in batches). The overhead per trial is the wall time divided by
   the trials, minus the training time the trials' curves record. The trials' own timestamps
   split it up, and the same storage calls are then timed directly in this process (no Celery) to
   tell the database's share from Celery's.
2. **The book study** (``examples/mnist-book-random.yaml``: 100 trials x 50 epochs): ``hpo submit
   --broker --db --wait --no-progress`` timed from process start to exit with one ``hpo worker -c
   2`` (and ``-c 1`` for scaling), against the local mode (``hpo submit --db sqlite:///fresh
   --workers 2``, what ``bench/study.py`` measures).

Each study gets a fresh unique name and is deleted afterwards; the workers are started before the
clock starts (their start-up is not a study's cost) and their process group is always stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
# This file is named like the standard library's `queue` (which Celery imports): take its own
# directory off the path, which `python bench/queue.py` put first.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

DEFAULT_BROKER = "redis://127.0.0.1:6379/11"
DEFAULT_DB = "postgresql+psycopg://postgres@127.0.0.1:5432/hpo_bench"
BOOK = ROOT / "examples" / "mnist-book-random.yaml"
TARGETS = {"overhead_ms": 5.0, "queue_vs_local": 1.1, "scaling": 1.85}


def _noop_spec(name: str, trials: int) -> dict[str, Any]:
    return {
        "name": name,
        "seed": 0,
        "dataset": {"kind": "digits", "subset": 100, "val_fraction": 0.2, "test_fraction": 0.2},
        "model": {"hidden_sizes": [], "activation": "relu", "weight_init": "he"},
        "training": {"optimizer": "sgd", "batch_size": 1000, "epochs": 1},
        "search": {
            "sampler": "random",
            "stages": [{"trials": trials, "epochs": 1}],
            "parameters": {"lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}},
        },
        "objective": {"metric": "val_acc", "reduce": "final"},
        "limits": {"max_failed_trials": trials},
    }


def _env(broker: str, db: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(HPO_BROKER_URL=broker, HPO_DATABASE_URL=db, PYTHONPATH=str(ROOT))
    return env


@contextlib.contextmanager
def _worker(broker: str, db: str, concurrency: int) -> Iterator[subprocess.Popen[bytes]]:
    """One `hpo worker -c N` in its own process group, ready (answers a ping) before yielding."""
    from workers._executor import make_executor

    cmd = [sys.executable, "-m", "hpo", "worker", "-c", str(concurrency), "--loglevel", "warning"]
    with tempfile.TemporaryFile() as log, _group(cmd, broker, db, log) as proc:
        app = make_executor(broker, db).app
        deadline = time.monotonic() + 60
        while not _ping(app):
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise SystemExit(f"hpo worker did not start:\n{log.read().decode(errors='replace')}")
        time.sleep(0.5 * concurrency)  # let every pool process finish its imports
        yield proc


def _ping(app: Any) -> bool:
    try:
        return bool(app.control.ping(timeout=0.5))
    except Exception:  # the broker restarting (other users of the machine): ask again
        time.sleep(0.2)
        return False


@contextlib.contextmanager
def _group(cmd: list[str], broker: str, db: str, log: Any) -> Iterator[subprocess.Popen[bytes]]:
    """A process in its own session; SIGTERM to its whole group on the way out, always."""
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=_env(broker, db), stdout=log, stderr=log, start_new_session=True
    )
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _prepare_database(db: str) -> None:
    """Create the benchmark's database if needed, upgrade it, and vacuum hpo's and Optuna's tables.

    A database that tests or earlier runs churned holds dead rows by the ten thousand until
    autovacuum comes by (seen here: 128k in ``hpo_trials``, +25% per trial); the benchmark measures
    the steady state, not that backlog.
    """
    import sqlalchemy as sa

    from hpo.storage import Storage

    url = sa.engine.make_url(db)
    if url.get_backend_name() == "postgresql":
        admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            query = sa.text("SELECT 1 FROM pg_database WHERE datname = :d")
            if conn.execute(query, {"d": url.database}).first() is None:
                conn.execute(sa.text(f'CREATE DATABASE "{url.database}"'))
        admin.dispose()
    Storage(db).upgrade()
    if url.get_backend_name() == "postgresql":
        engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sa.text("VACUUM ANALYZE"))
        engine.dispose()


def _delete(db: str, name: str) -> None:
    from hpo.storage import Storage, StudyNotFoundError

    with contextlib.suppress(StudyNotFoundError):
        Storage(db).delete_study(name)


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


def _quantiles(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    return {
        "mean_ms": _ms(statistics.fmean(values)),
        "median_ms": _ms(statistics.median(values)),
        "p90_ms": _ms(values[int(0.9 * (len(values) - 1))]),
    }


# ---------------------------------------------------------------------------------------------
# 1. Overhead per trial


def _direct_calls(db: str, trials: int) -> dict[str, Any]:
    """claim, finish (+ progress) and advance (+ batched mirror), called in this process (no Celery)."""
    from hpo.orchestration import advance_study, submit_study
    from hpo.spec import StudySpec
    from hpo.storage import Storage, TrialOutcome, TrialState

    name = f"bench-queue-direct-{uuid.uuid4().hex[:8]}"
    spec = StudySpec.model_validate(_noop_spec(name, trials))
    storage = Storage(db)
    study, _ = submit_study(storage, spec)
    times: dict[str, list[float]] = {"claim": [], "finish": [], "advance": []}
    curves = [
        {"epoch": 1, "train_loss": 1.0, "train_acc": 0.5, "val_loss": 1.0, "val_acc": 0.5, "seconds": 0.001}
    ]
    try:
        for t in storage.trials(study.id, states=("PENDING",)):
            t0 = time.perf_counter()
            claimed = storage.claim_with_study(t.id, "bench", 60.0)
            t1 = time.perf_counter()
            assert claimed is not None
            row = claimed[0]
            outcome = TrialOutcome(TrialState.COMPLETE, 0.5, None, curves, {1: 0.5})
            progress = storage.finish(row.id, "bench", outcome, attempt=row.attempts)
            t2 = time.perf_counter()
            advance_study(storage, study.id, progress)
            t3 = time.perf_counter()
            times["claim"].append(t1 - t0)
            times["finish"].append(t2 - t1)
            times["advance"].append(t3 - t2)
    finally:
        _delete(db, name)
    return {name: _quantiles(v) for name, v in times.items()}


def overhead(broker: str, db: str, trials: int) -> dict[str, Any]:
    from hpo.orchestration import dispatch_trials, submit_study
    from hpo.spec import StudySpec
    from hpo.storage import Storage
    from workers._executor import make_executor

    storage = Storage(db)
    executor = make_executor(broker, db)
    name = f"bench-queue-noop-{uuid.uuid4().hex[:8]}"
    spec = StudySpec.model_validate(_noop_spec(name, trials))
    try:
        with _worker(broker, db, 1):
            t0 = time.perf_counter()
            study, _ = submit_study(storage, spec)
            t1 = time.perf_counter()
            dispatch_trials(storage, executor, [t.id for t in storage.trials(study.id, states=("PENDING",))])
            t2 = time.perf_counter()
            while (study := storage.get_study(name)).state == "RUNNING":
                time.sleep(0.01)
            t3 = time.perf_counter()
        rows = sorted(storage.trials(study.id), key=lambda r: r.started_at or r.created_at)
    finally:
        _delete(db, name)
    if study.state != "COMPLETE" or any(r.state != "COMPLETE" for r in rows):
        raise SystemExit(f"no-op study ended {study.state}: {study.reason}")
    wall = t3 - t0
    train = [sum(c["seconds"] for c in (r.curves or [])) for r in rows]
    running = [(r.finished_at - r.started_at).total_seconds() for r in rows]  # type: ignore[operator]
    gaps = [(b.started_at - a.finished_at).total_seconds() for a, b in itertools.pairwise(rows)]  # type: ignore[operator]
    span = (rows[-1].finished_at - rows[0].started_at).total_seconds()  # type: ignore[operator]
    return {
        "trials": trials,
        "wall_s": round(wall, 3),
        "submit_s": round(t1 - t0, 3),
        "dispatch_s": round(t2 - t1, 3),
        "dispatch_per_trial_ms": _ms((t2 - t1) / trials),
        "first_start_to_last_finish_s": round(span, 3),
        "wall_per_trial_ms": _ms(wall / trials),
        "training_per_trial_ms": _ms(statistics.fmean(train)),
        "overhead_per_trial_ms": _ms(wall / trials - statistics.fmean(train)),
        "claim_to_finish": _quantiles(running),
        "in_trial_not_training_mean_ms": _ms(statistics.fmean(running) - statistics.fmean(train)),
        "finish_to_next_claim": _quantiles(gaps),
        "direct_storage_calls": _direct_calls(db, min(trials, 200)),
    }


# ---------------------------------------------------------------------------------------------
# 2. The book study


def _book_copy(tmp: Path, tag: str) -> tuple[Path, str]:
    spec = yaml.safe_load(BOOK.read_text())
    spec["name"] = f"bench-queue-book-{tag}-{uuid.uuid4().hex[:8]}"
    path = tmp / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path, spec["name"]


def _submit(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, datetime, datetime]:
    """Seconds from process start to exit, and the wall-clock start and exit (UTC, as the DB)."""
    started = datetime.now(UTC)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    return seconds, started, datetime.now(UTC)


def _check(db: str, name: str, started: datetime, exited: datetime) -> dict[str, Any]:
    from hpo.storage import Storage

    storage = Storage(db)
    study = storage.get_study(name)
    counts = storage.counts(study.id)
    rows = storage.trials(study.id)
    start = min(r.started_at for r in rows if r.started_at)
    end = max(r.finished_at for r in rows if r.finished_at)
    if study.state != "COMPLETE" or counts.get("COMPLETE", 0) != 100:
        raise SystemExit(f"study {name} ended {study.state} with {counts}")
    train = [sum(c["seconds"] for c in (r.curves or [])) for r in rows]
    running = [(r.finished_at - r.started_at).total_seconds() for r in rows]  # type: ignore[operator]
    gaps: list[float] = []
    for worker in {r.worker for r in rows}:  # finish -> next claim, per worker process
        own = sorted((r for r in rows if r.worker == worker), key=lambda r: r.started_at)  # type: ignore[arg-type,return-value]
        gaps += [(b.started_at - a.finished_at).total_seconds() for a, b in itertools.pairwise(own)]  # type: ignore[operator]
    return {
        "trials_span_s": round((end - start).total_seconds(), 3),
        "start_to_first_claim_s": round((_utc(start) - started).total_seconds(), 3),
        "last_finish_to_exit_s": round((exited - _utc(end)).total_seconds(), 3),
        "worker_processes": len({r.worker for r in rows}),
        "training_per_trial_ms": _ms(statistics.fmean(train)),
        "claim_to_finish_mean_ms": _ms(statistics.fmean(running)),
        "finish_to_next_claim_mean_ms": _ms(statistics.fmean(gaps)) if gaps else None,
    }


def _utc(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def book_local(tmp: Path) -> dict[str, Any]:
    path, name = _book_copy(tmp, "local")
    db = f"sqlite:///{tmp / (name + '.db')}"
    cmd = [sys.executable, "-m", "hpo", "submit", str(path), "--db", db, "--workers", "2", "--no-progress"]
    env = {k: v for k, v in os.environ.items() if k not in ("HPO_BROKER_URL", "HPO_DATABASE_URL")}
    seconds, started, exited = _submit(cmd, env)
    return {"seconds": round(seconds, 3), **_check(db, name, started, exited)}


def book_queue(tmp: Path, broker: str, db: str, concurrency: int) -> dict[str, Any]:
    path, name = _book_copy(tmp, f"c{concurrency}")
    cmd = [sys.executable, "-m", "hpo", "submit", str(path), "--broker", broker, "--db", db]
    cmd += ["--wait", "--no-progress"]
    try:
        with _worker(broker, db, concurrency):
            seconds, started, exited = _submit(cmd, _env(broker, db))
        return {"seconds": round(seconds, 3), **_check(db, name, started, exited)}
    finally:
        _delete(db, name)


# ---------------------------------------------------------------------------------------------


def _med(runs: list[dict[str, Any]], key: str = "seconds") -> float:
    return round(statistics.median(float(r[key]) for r in runs), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000, help="no-op trials (default 1000)")
    parser.add_argument("--skip-book", action="store_true", help="only the overhead benchmark")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each book configuration")
    parser.add_argument("--broker", default=DEFAULT_BROKER, help="a Redis db used by nothing else")
    parser.add_argument("--db", default=DEFAULT_DB)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    load = os.getloadavg()
    result: dict[str, Any] = {
        "timestamp_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": len(os.sched_getaffinity(0)),
        "loadavg_1m_at_start": round(load[0], 2),
        "targets": TARGETS,
    }
    _prepare_database(args.db)
    o = result["overhead"] = overhead(args.broker, args.db, args.trials)
    d = o["direct_storage_calls"]
    print(f"no-op study, {o['trials']} trials, 1 worker x concurrency 1")
    rows = [
        ("wall (submit + dispatch + run)", f"{o['wall_s']:.2f} s"),
        ("  submit (create study + trials)", f"{o['submit_s']:.3f} s"),
        (
            "  dispatch (send_task x N)",
            f"{o['dispatch_s']:.3f} s ({o['dispatch_per_trial_ms']:.2f} ms/trial)",
        ),
        ("wall per trial", f"{o['wall_per_trial_ms']:.2f} ms"),
        ("training per trial (curves)", f"{o['training_per_trial_ms']:.2f} ms"),
        ("overhead per trial", f"{o['overhead_per_trial_ms']:.2f} ms (target <= {TARGETS['overhead_ms']:g})"),
        ("claim -> finish (mean)", f"{o['claim_to_finish']['mean_ms']:.2f} ms"),
        ("  of which not training", f"{o['in_trial_not_training_mean_ms']:.2f} ms"),
        (
            "finish -> next claim (mean/med/p90)",
            "{mean_ms:.2f} / {median_ms:.2f} / {p90_ms:.2f} ms".format(**o["finish_to_next_claim"]),
        ),
        ("direct Storage.claim_with_study (mean)", f"{d['claim']['mean_ms']:.2f} ms"),
        ("direct Storage.finish + progress (mean)", f"{d['finish']['mean_ms']:.2f} ms"),
        ("direct advance + batched mirror (mean)", f"{d['advance']['mean_ms']:.2f} ms"),
    ]
    for label, value in rows:
        print(f"  {label:<40} {value}")
    if not args.skip_book:
        with tempfile.TemporaryDirectory(prefix="hpo-bench-queue-") as tmp:
            runs: dict[str, list[dict[str, Any]]] = {"local_w2": [], "queue_c2": [], "queue_c1": []}
            for _ in range(args.repeats):
                runs["local_w2"].append(book_local(Path(tmp)))
                runs["queue_c2"].append(book_queue(Path(tmp), args.broker, args.db, 2))
                runs["queue_c1"].append(book_queue(Path(tmp), args.broker, args.db, 1))
        b = result["book"] = {k: {"median_s": _med(v), "runs": v} for k, v in runs.items()}
        b["queue_vs_local"] = round(b["queue_c2"]["median_s"] / b["local_w2"]["median_s"], 3)
        b["scaling_c1_over_c2"] = round(b["queue_c1"]["median_s"] / b["queue_c2"]["median_s"], 3)
        print(f"book study (100 trials x 50 epochs), median of {args.repeats}")
        print(f"  {'local, 2 workers (SQLite)':<40} {b['local_w2']['median_s']:.2f} s")
        print(f"  {'queue, 1 worker -c 2 (PostgreSQL)':<40} {b['queue_c2']['median_s']:.2f} s")
        print(f"  {'queue, 1 worker -c 1':<40} {b['queue_c1']['median_s']:.2f} s")
        print(f"  {'queue / local':<40} {b['queue_vs_local']:.3f}x (target <= {TARGETS['queue_vs_local']:g})")
        print(f"  {'scaling c1 / c2':<40} {b['scaling_c1_over_c2']:.3f}x (target >= {TARGETS['scaling']:g})")
    result["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
