"""Scale: many studies of short trials through Celery + Redis + PostgreSQL, 1 to 64 pool processes.

Usage::

    python bench/scale.py [--processes 1,4,16,32,64] [--studies 10] [--trials 2000]
                          [--sleep 0.5] [--sleep-trials 40] [--baseline-trials 1000]
                          [--json docs/results/scale.json] [--plot docs/img/scale.png]

For each pool-process count P, real ``hpo worker`` processes are started (``ceil(P/16)`` workers of
at most 16 pool processes each, as ``docker compose up --scale worker=N`` would run them), and
``--studies`` studies are submitted at once, each of ``--trials`` synthetic trials in four
narrowing stages (``synthetic:`` in a study file: the trials take every step of a real one but
train nothing). Two kinds:

* **no-op**: one epoch that does nothing: what the queue, the workers and the database cost;
* **sleep**: one epoch that sleeps ``--sleep`` seconds, ``--sleep-trials`` per pool process in
  all (so each run lasts about as long): trials that leave the CPU mostly idle, so that many more
  processes than cores are busy at once, as with trials that wait on a GPU or on I/O. The no-op
  kind saturates the 2 cores from 2 processes on; the sleep kind only near 64.

Reported per run: trials/s (from the first submission to the last study's end), claim and finish
latency (the ``Storage.claim_with_study`` and ``Storage.finish`` calls, p50/p99, from the line each
worker logs per trial; and the first claim of each pool process, median and max), the database
connections in use (peak, from ``pg_stat_activity``), Redis memory (peak growth of ``used_memory``)
and queue length, connection errors in the workers' logs, and the invariants I1-I5 of every study
at the end (lost, duplicated and stale trials, results that do not match their parameters, the
Optuna view, attempts and reasons).

Before the sweep, in the same run: the per-trial overhead of ``bench/queue.py`` (today's measure:
one worker, concurrency 1, trivially cheap training) and the cost per no-op trial of Optuna's own
``RDBStorage`` on the same PostgreSQL (``study.optimize`` with a RandomSampler), with the ratio of
ours at one process to Optuna's.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import os
import re
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_BROKER = "redis://127.0.0.1:6379/10"
DEFAULT_DB = "postgresql+psycopg://postgres@127.0.0.1:5432/hpo_bench_scale"
QUEUE = "hpo-scale"
PER_WORKER = 16
STAGES = 4
TARGETS = {"claim_p99_ms_at_32": 50.0, "overhead_vs_optuna": 0.2, "max_connections": 100}
_TIMING = re.compile(
    r"trial (\d+) of study (\S+) (\S+(?: \S+)?): claim ([\d.]+) ms, run ([\d.]+) s, "
    r"finish ([\d.]+) ms, advance ([\d.]+) ms"
)
# A pool process's name in its log lines (per worker log: ForkPoolWorker-N), then its timing.
_PROCESS_TIMING = re.compile(r"INFO/(ForkPoolWorker-\d+)\] " + _TIMING.pattern)
_CONNECTION_ERRORS = re.compile(
    r"too many clients|QueuePool limit|OperationalError|connection (?:refused|reset)|"
    r"server closed the connection|ConnectionError|could not connect",
    re.IGNORECASE,
)


def _bench_queue() -> Any:
    """bench/queue.py as a module (its name shadows the standard library's ``queue``)."""
    spec = importlib.util.spec_from_file_location("hpo_bench_queue", ROOT / "bench" / "queue.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def study_spec(name: str, trials: int, sleep: float) -> dict[str, Any]:
    """A study of ``trials`` synthetic one-epoch trials in four narrowing stages."""
    per_stage = [trials // STAGES + (1 if i < trials % STAGES else 0) for i in range(STAGES)]
    return {
        "name": name,
        "seed": 0,
        "dataset": {"kind": "digits"},  # never loaded: the trials are synthetic
        "training": {"epochs": 1},
        "search": {
            "sampler": "narrowing",
            "stages": [{"trials": n} for n in per_stage],
            "parameters": {
                "lr": {"type": "float", "low": 1e-4, "high": 1.0, "log": True},
                "weight_decay": {"type": "float", "low": 1e-8, "high": 1e-2, "log": True},
            },
        },
        "synthetic": {"epoch_seconds": sleep},
    }


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return round(values[min(len(values) - 1, math.ceil(q * len(values)) - 1)], 3) if values else math.nan


class _Sampler(threading.Thread):
    """Samples database connections, Redis memory and the queue's length every 0.2 s."""

    def __init__(self, broker: str, db: str) -> None:
        super().__init__(daemon=True)
        import redis
        import sqlalchemy as sa

        self.redis = redis.Redis.from_url(broker)
        self.engine = sa.create_engine(db, poolclass=sa.pool.NullPool)
        self.database = sa.engine.make_url(db).database
        self.stop = threading.Event()
        self.samples: list[dict[str, float]] = []
        self.base_memory = int(self.redis.info("memory")["used_memory"])

    def run(self) -> None:
        import sqlalchemy as sa

        query = sa.text(
            "SELECT count(*) FILTER (WHERE datname = :d), count(*) FILTER (WHERE datname = :d AND "
            "application_name = 'hpo-worker'), count(*) FILTER (WHERE datname = :d AND "
            "application_name = 'hpo-worker' AND state <> 'idle'), count(*) FROM pg_stat_activity "
            "WHERE backend_type = 'client backend'"
        )
        with self.engine.connect() as conn:
            while not self.stop.wait(0.2):
                ours, workers, active, total = conn.execute(query, {"d": self.database}).one()
                memory = int(self.redis.info("memory")["used_memory"])
                self.samples.append(
                    {
                        "t": time.monotonic(),
                        "connections": ours - 1,  # not this sampler's own
                        "workers": workers,
                        "active": active,
                        "server_connections": total,
                        "redis_growth": memory - self.base_memory,
                        "queue": int(self.redis.llen(QUEUE)),
                    }
                )
                conn.rollback()  # a fresh snapshot of pg_stat_activity each time

    def summary(self) -> dict[str, Any]:
        self.stop.set()
        self.join()
        self.engine.dispose()
        peak = (
            {k: max((s[k] for s in self.samples), default=0) for k in self.samples[0]} if self.samples else {}
        )
        return {
            "db_connections_peak": peak.get("connections"),
            "worker_connections_peak": peak.get("workers"),
            "worker_connections_active_peak": peak.get("active"),
            "server_connections_peak": peak.get("server_connections"),
            "redis_memory_growth_peak_mb": round(peak.get("redis_growth", 0) / 2**20, 2),
            "queue_length_peak": peak.get("queue"),
        }


@contextlib.contextmanager
def _workers(bq: Any, broker: str, db: str, processes: int, logs: Path) -> Iterator[list[Path]]:
    """``ceil(processes / 16)`` ``hpo worker`` processes, every pool process ready, then yield
    their log files; all stopped on the way out."""
    from workers._executor import make_executor

    counts = [PER_WORKER] * (processes // PER_WORKER) + (
        [processes % PER_WORKER] if processes % PER_WORKER else []
    )
    paths = [logs / f"worker-{i}.log" for i in range(len(counts))]
    with contextlib.ExitStack() as stack:
        for i, (n, path) in enumerate(zip(counts, paths, strict=True)):
            cmd = [sys.executable, "-m", "hpo", "worker", "-c", str(n), "-Q", QUEUE, "-l", "info"]
            cmd += ["-n", f"scale{i}-{uuid.uuid4().hex[:6]}@%h"]
            log = stack.enter_context(path.open("wb"))
            stack.enter_context(bq._group(cmd, broker, db, log))
        app = make_executor(broker, db, QUEUE).app
        deadline = time.monotonic() + 120
        while len(_ping(app)) < len(counts) or _pool_ready(paths) < processes:
            if time.monotonic() > deadline:
                raise SystemExit(f"workers did not start: see {logs}")
            time.sleep(0.5)
        yield paths


def _first_claims(texts: list[str]) -> tuple[list[float], list[float]]:
    """The claim times of each pool process's first trial (one per process of each worker log),
    and of all the others: the first claims are made in the burst of the run's start, when every
    process takes its first message while the studies are still being submitted."""
    firsts: list[float] = []
    others: list[float] = []
    for text in texts:
        seen: set[str] = set()
        for m in _PROCESS_TIMING.finditer(text):
            (others if m.group(1) in seen else firsts).append(float(m.group(5)))
            seen.add(m.group(1))
    return firsts, others


def _ping(app: Any) -> list[Any]:
    try:
        return list(app.control.ping(timeout=1.0) or [])
    except Exception:
        return []


def _pool_ready(paths: list[Path]) -> int:
    """Pool processes that logged their start (``workers.app._pool_process_init``)."""
    return sum(p.read_text(errors="replace").count("is a pool process of") for p in paths if p.exists())


def _run(
    bq: Any, broker: str, db: str, processes: int, studies: int, trials: int, sleep: float
) -> dict[str, Any]:
    from hpo.orchestration import dispatch_trials, submit_study
    from hpo.spec import StudySpec
    from hpo.storage import Storage
    from workers._executor import make_executor

    storage, executor = Storage(db), make_executor(broker, db, QUEUE)
    import redis

    redis.Redis.from_url(broker).delete(QUEUE)  # nothing left over from an interrupted run
    tag = uuid.uuid4().hex[:6]
    names = [f"scale-p{processes}-{tag}-{i}" for i in range(studies)]
    with (
        tempfile.TemporaryDirectory(prefix="hpo-bench-scale-") as tmp,
        _workers(bq, broker, db, processes, Path(tmp)) as logs,
    ):
        sampler = _Sampler(broker, db)
        sampler.start()
        start = time.perf_counter()
        for name in names:  # as ten users submitting at once would: each study's first stage queued
            study, _ = submit_study(
                storage, StudySpec.model_validate(study_spec(name, trials, sleep)), queue=QUEUE
            )
            dispatch_trials(storage, executor, [t.id for t in storage.trials(study.id, states=("PENDING",))])
        submitted = time.perf_counter() - start
        while any(storage.get_study(n).state == "RUNNING" for n in names):
            time.sleep(0.1)
        wall = time.perf_counter() - start
        resources = sampler.summary()
        time.sleep(1.0)  # the last workers' log lines
        texts = [p.read_text(errors="replace") for p in logs]
        text = "\n".join(texts)
    timings = [m.groups() for m in _TIMING.finditer(text)]
    first_claims, later_claims = _first_claims(texts)
    errors = [line for line in text.splitlines() if _CONNECTION_ERRORS.search(line)]
    checks = [check_invariants(storage, n) for n in names]
    for n in names:
        bq._delete(db, n)
    total = studies * trials
    return {
        "processes": processes,
        "workers": math.ceil(processes / PER_WORKER),
        "studies": studies,
        "trials": total,
        "epoch_seconds": sleep,
        "wall_s": round(wall, 3),
        "submit_s": round(submitted, 3),
        "trials_per_s": round(total / wall, 1),
        "per_trial_ms": round(wall / total * 1e3, 3),
        "claim_ms": {
            "p50": _pct([float(t[3]) for t in timings], 0.5),
            "p99": _pct([float(t[3]) for t in timings], 0.99),
        },
        "first_claim_ms": {"p50": _pct(first_claims, 0.5), "max": max(first_claims, default=0.0)},
        "later_claim_ms": {"p50": _pct(later_claims, 0.5), "p99": _pct(later_claims, 0.99)},
        "finish_ms": {
            "p50": _pct([float(t[5]) for t in timings], 0.5),
            "p99": _pct([float(t[5]) for t in timings], 0.99),
        },
        "advance_ms": {
            "p50": _pct([float(t[6]) for t in timings], 0.5),
            "p99": _pct([float(t[6]) for t in timings], 0.99),
        },
        "logged_trials": len(timings),
        "connection_errors": len(errors),
        "connection_error_lines": errors[:5],
        **resources,
        "invariants": _sum_checks(checks),
    }


def check_invariants(storage: Any, name: str) -> dict[str, int]:
    """Violations of I1-I5 in a finished study of synthetic trials (all zero when it is sound).

    I4 (the Optuna view agrees with our tables) is checked for every trial in SQL, row against
    row (Optuna's ``trials``, ``trial_values`` and ``trial_params`` against ``hpo_trials``), and
    through Optuna's own storage API for a sample (``RDBStorage.get_trial``): loading 2,000 trials
    with ``optuna.load_study(...).get_trials()`` takes Optuna minutes here.
    """
    import json

    import sqlalchemy as sa

    from hpo.orchestration import study_spec as spec_of
    from hpo.orchestration._synthetic import SyntheticRun
    from hpo.storage import optuna_storage

    study = storage.get_study(name)
    spec = spec_of(study)
    rows = storage.trials(study.id)
    finished = [t for t in rows if t.state in ("COMPLETE", "FAIL", "PRUNED")]
    numbers = [t.number for t in rows]
    sample = rows[:: max(1, len(rows) // 40)]
    wrong = 0
    for t in [t for t in sample if t.state == "COMPLETE"]:  # I3 on a sample
        run = SyntheticRun(spec, t.params, spec.stage_epochs(t.stage), t.seed, lambda _r: False)
        run.sleep = 0.0
        wrong += run.fit().history[-1].val_acc != t.value
    query = sa.text(
        "SELECT t.trial_id, t.state, v.value, "
        "(SELECT json_object_agg(p.param_name, p.param_value) FROM trial_params p "
        " WHERE p.trial_id = t.trial_id) AS params "
        "FROM trials t LEFT JOIN trial_values v ON v.trial_id = t.trial_id AND v.objective = 0 "
        "WHERE t.study_id = :s"
    )
    with sa.create_engine(storage.url, poolclass=sa.pool.NullPool).connect() as conn:
        view = {int(r[0]): r for r in conn.execute(query, {"s": study.optuna_study_id})}
    mismatched = abs(len(view) - len(rows))
    for t in rows:
        o = view.get(t.optuna_trial_id or -1)
        if (
            o is None
            or o[1] != t.state
            or (t.state == "COMPLETE" and o[2] != t.value)
            or o[3] is None
            or set(json.loads(o[3]) if isinstance(o[3], str) else o[3]) != set(t.params)
        ):
            mismatched += 1
    api = optuna_storage(storage.url)
    for t in sample:
        ot = api.get_trial(t.optuna_trial_id)
        mismatched += ot.params != t.params or ot.state.name != t.state or ot.value != t.value
    return {
        "study_not_complete": int(study.state != "COMPLETE"),
        "lost": spec.total_trials - len(finished),  # I1
        "stale": sum(t.state in ("RUNNING", "PENDING") for t in rows),  # I1
        "duplicated": len(numbers) - len(set(numbers)),  # I2
        "not_contiguous": int(sorted(set(numbers)) != list(range(len(set(numbers))))),  # I2
        "result_mismatch": wrong,  # I3
        "optuna_mismatch": mismatched,  # I4
        "run_again": sum(t.attempts > 1 for t in rows),  # I5: executions beyond one per trial
        "failed_without_reason": sum(t.state == "FAIL" and not t.reason for t in rows),  # I5
        "failed": sum(t.state == "FAIL" for t in rows),
    }


def _sum_checks(checks: list[dict[str, int]]) -> dict[str, int]:
    return {k: sum(c[k] for c in checks) for k in checks[0]}


def optuna_rdb(db: str, trials: int) -> dict[str, Any]:
    """Optuna's own cost per no-op trial on this PostgreSQL: ``study.optimize`` on ``RDBStorage``."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(db)
    out: dict[str, Any] = {"trials": trials}
    for label, sampler in (
        ("random", optuna.samplers.RandomSampler(seed=0)),
        ("tpe", optuna.samplers.TPESampler(seed=0)),
    ):
        name = f"bench-scale-optuna-{label}-{uuid.uuid4().hex[:6]}"
        study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, direction="maximize")

        def objective(trial: optuna.Trial) -> float:
            lr = trial.suggest_float("lr", 1e-4, 1.0, log=True)
            wd = trial.suggest_float("weight_decay", 1e-8, 1e-2, log=True)
            return -abs(math.log10(lr) + 2) - abs(math.log10(wd) + 5)

        start = time.perf_counter()
        study.optimize(objective, n_trials=trials)
        out[f"{label}_per_trial_ms"] = round((time.perf_counter() - start) / trials * 1e3, 3)
        optuna.delete_study(study_name=name, storage=storage)
    storage.engine.dispose()
    return out


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, lat) = plt.subplots(1, 2, figsize=(11, 4.2))
    for kind, style in (("noop", "o-"), ("sleep", "s-")):
        runs = result["runs"].get(kind) or []
        if not runs:
            continue
        procs = [r["processes"] for r in runs]
        label = "no-op trials" if kind == "noop" else f"{runs[0]['epoch_seconds'] * 1e3:g} ms sleep trials"
        ax.plot(procs, [r["trials_per_s"] for r in runs], style, label=label)
        lat.plot(procs, [r["claim_ms"]["p99"] for r in runs], style, label=f"claim p99, {label}")
        lat.plot(procs, [r["finish_ms"]["p99"] for r in runs], style, alpha=0.5, label=f"finish p99, {label}")
        if kind == "sleep":
            ideal = [p / r["epoch_seconds"] for p, r in zip(procs, runs, strict=True)]
            ax.plot(procs, ideal, ":", color="gray", label="sleep trials, ideal (P / sleep)")
    for a in (ax, lat):
        a.set_xscale("log", base=2)
        a.set_xticks(procs, [str(p) for p in procs])
        a.set_xlabel("pool processes (2 cores)")
        a.grid(alpha=0.3)
    ax.set_yscale("log")
    ax.set_ylabel("trials per second (10 studies at once)")
    ax.set_title("throughput")
    lat.axhline(TARGETS["claim_p99_ms_at_32"], color="red", lw=0.8, ls="--", label="50 ms goal")
    lat.set_yscale("log")
    lat.set_ylabel("ms")
    lat.set_title("claim / finish latency, p99")
    ax.legend(fontsize=8)
    lat.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", default="1,4,16,32,64", help="pool-process counts to run")
    parser.add_argument("--studies", type=int, default=10)
    parser.add_argument("--trials", type=int, default=2000, help="no-op trials per study")
    parser.add_argument("--trials-at-1", type=int, default=None, help="no-op trials per study at 1 process")
    parser.add_argument("--sleep", type=float, default=0.5, help="seconds a sleep trial sleeps (0: none)")
    parser.add_argument("--sleep-trials", type=int, default=40, help="sleep trials per pool process")
    parser.add_argument("--baseline-trials", type=int, default=1000, help="bench/queue.py and Optuna trials")
    parser.add_argument("--broker", default=DEFAULT_BROKER, help="a Redis db used by nothing else")
    parser.add_argument("--db", default=DEFAULT_DB)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--no-vacuum", action="store_true", help="skip VACUUM ANALYZE before each run")
    parser.add_argument("--kinds", default="noop,sleep", help="trial kinds to run (noop, sleep)")
    args = parser.parse_args()
    # The workers' reapers look after the studies of their own queue (HPO_QUEUE): this one's.
    os.environ["HPO_QUEUE"] = QUEUE
    bq = _bench_queue()
    processes = [int(p) for p in args.processes.split(",")]
    result: dict[str, Any] = {
        "timestamp_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": len(os.sched_getaffinity(0)),
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
        "targets": TARGETS,
        "runs": {"noop": [], "sleep": []},
    }
    from hpo.storage import Storage

    prepare = (lambda db: Storage(db).upgrade()) if args.no_vacuum else bq._prepare_database
    prepare(args.db)
    if args.baseline_trials:
        queue = bq.overhead(args.broker, args.db, args.baseline_trials)
        result["queue_py_overhead_per_trial_ms"] = queue["overhead_per_trial_ms"]
        result["optuna_rdb"] = optuna_rdb(args.db, args.baseline_trials)
        print(
            f"baselines: bench/queue.py overhead {queue['overhead_per_trial_ms']:.2f} ms/trial; "
            f"Optuna RDBStorage no-op {result['optuna_rdb']['random_per_trial_ms']:.2f} ms/trial (random), "
            f"{result['optuna_rdb']['tpe_per_trial_ms']:.2f} (TPE)"
        )
    wanted = set(args.kinds.split(","))
    kinds = [("noop", 0.0)] + ([("sleep", args.sleep)] if args.sleep else [])
    kinds = [(kind, sleep) for kind, sleep in kinds if kind in wanted]
    for kind, sleep in kinds:
        for p in processes:
            noop = args.trials_at_1 if p == 1 and args.trials_at_1 else args.trials
            trials = noop if kind == "noop" else max(STAGES, args.sleep_trials * p // args.studies)
            prepare(args.db)
            run = _run(bq, args.broker, args.db, p, args.studies, trials, sleep)
            result["runs"][kind].append(run)
            inv = run["invariants"]
            claim, finish = run["claim_ms"], run["finish_ms"]
            print(
                f"{kind:>5} P={p:>2}: {run['trials']} trials in {run['wall_s']:.1f} s = "
                f"{run['trials_per_s']:.1f}/s; claim p50/p99 {claim['p50']}/{claim['p99']} ms "
                f"(first per process: max {run['first_claim_ms']['max']} ms; the others' p99 "
                f"{run['later_claim_ms']['p99']} ms), finish "
                f"{finish['p50']}/{finish['p99']} ms; worker connections {run['worker_connections_peak']} "
                f"(database {run['db_connections_peak']}, errors {run['connection_errors']}); redis "
                f"+{run['redis_memory_growth_peak_mb']} MB; lost {inv['lost']} dup {inv['duplicated']} "
                f"stale {inv['stale']} I3 {inv['result_mismatch']} I4 {inv['optuna_mismatch']}",
                flush=True,
            )
    noop = {r["processes"]: r for r in result["runs"]["noop"]}
    if 1 in noop and args.baseline_trials:
        ours = noop[1]["per_trial_ms"]
        result["per_trial_ms_at_1"] = ours
        result["vs_queue_py"] = round(ours / result["queue_py_overhead_per_trial_ms"], 3)
        result["vs_optuna_rdb"] = round(ours / result["optuna_rdb"]["random_per_trial_ms"], 3)
        print(
            f"per no-op trial at 1 process: {ours:.2f} ms = {result['vs_queue_py']:.2f}x bench/queue.py's "
            f"overhead, {result['vs_optuna_rdb']:.3f}x Optuna RDBStorage's "
            f"(goal <= {TARGETS['overhead_vs_optuna']})"
        )
    result["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    if args.plot:
        plot(result, args.plot)


if __name__ == "__main__":
    main()
