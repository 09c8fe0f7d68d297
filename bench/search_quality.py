"""Which search finds the best network per unit of compute? hpo's narrowing against Optuna's
samplers and pruners, at equal epoch budgets, on several tasks and from two boxes.

Usage::

    python bench/search_quality.py --task book            # one task, 10 seeds, both boxes
    python bench/search_quality.py --task wine --quick    # 3 seeds: a quick look
    python bench/search_quality.py --report               # the tables of every task run so far

Each ``--task`` run writes ``docs/results/search-quality-<task>.json`` (summary and compact
per-trial data) and ``docs/img/search-quality-<task>.png`` (median best validation accuracy so
far against cumulative epochs, one panel per box). ``--report`` reads those files and prints the
per-task tables, the average ranks across tasks and the goals, in Markdown.

Tasks and methods are in ``bench/_quality_tasks.py``; how one run goes in ``bench/_quality_runs.py``.
Every method gets the same epochs: a budget of ``K`` full trials of ``E`` epochs each, reported at
a quarter, a half and all of it. Runs are spread over ``--processes`` processes (default: the
cores), one BLAS thread each.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# bench/queue.py would shadow the standard library's `queue` (multiprocessing imports it): take
# this script's directory off the path, and put the repository on it.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from bench._quality_tasks import METHODS, NARROWING_METHODS, TASKS, Task, write_data_files  # noqa: E402

RESULTS = ROOT / "docs" / "results"
FIGURES = ROOT / "docs" / "img"
BOXES = ("user", "low")
REFERENCE = "random"  # "epochs to reach random search's full-budget median"


def make_jobs(
    task: Task,
    methods: Sequence[str],
    seeds: int,
    boxes: Sequence[str],
    data_dir: str,
    variants: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """One job per box, method and seed (and budget, for narrowing: its stages are shares of it).

    ``variants`` are the narrowing methods by name (default :data:`NARROWING_METHODS`)."""
    variants = NARROWING_METHODS if variants is None else variants
    jobs = []
    for box in boxes:
        for method in methods:
            if method == "cmaes" and not task.continuous:
                continue  # CMA-ES samples floats; Optuna would sample the rest at random
            for seed in range(seeds):
                job = {"task": task.name, "trials": task.trials, "box": box, "method": method}
                job |= {"seed": seed, "data_dir": data_dir}
                if method in variants:
                    jobs += [{**job, "variant": variants[method], "budget": b} for b in task.budgets()]
                else:
                    jobs.append(job)
    return jobs


# ---------------------------------------------------------------------------------------------
# Arithmetic on runs


def curve(trials: Sequence[dict[str, Any]]) -> list[tuple[int, float, float | None]]:
    """``(cumulative epochs, best value so far, the best's test accuracy)`` after each trial that
    improved the best, in the order the trials finished (ties keep the earlier trial)."""
    out, spent, best = [], 0, -math.inf
    for t in trials:
        spent += t["epochs"]
        if t["value"] is not None and t["value"] > best:
            best = t["value"]
            out.append((spent, best, t.get("test")))
    return out


def at_budget(
    points: Sequence[tuple[int, float, float | None]], budget: int
) -> tuple[float | None, float | None]:
    """Best value and its test accuracy once ``budget`` epochs are spent (None: nothing yet)."""
    best: tuple[float | None, float | None] = (None, None)
    for spent, value, test in points:
        if spent > budget:
            break
        best = (value, test)
    return best


def epochs_to_reach(points: Sequence[tuple[int, float, float | None]], target: float) -> int | None:
    """Cumulative epochs after which the best so far first reaches ``target`` (None: never)."""
    return next((spent for spent, value, _ in points if value >= target - 1e-12), None)


def run_result(run: dict[str, Any], budget: int) -> tuple[float | None, float | None]:
    """A run's best validation value and its winner's test accuracy at ``budget`` epochs.

    An Optuna run is read at ``budget`` off its one full-budget run; a narrowing run is its own
    run at that budget, whose winner hpo scored on the test split itself.
    """
    if "budget" in run:
        values = [t["value"] for t in run["trials"] if t["value"] is not None]
        test = (run.get("winner") or {}).get("test")
        return (max(values) if values else None), test
    return at_budget(curve(run["trials"]), budget)


def method_order(runs: Sequence[dict[str, Any]]) -> list[str]:
    """The methods of ``runs``: the known ones in :data:`METHODS` order, then any others."""
    seen = list(dict.fromkeys(r["method"] for r in runs))
    return [m for m in METHODS if m in seen] + [m for m in seen if m not in METHODS]


def quartiles(xs: Sequence[float]) -> tuple[float, float, float]:
    """First quartile, median, third quartile (inclusive method; one value: all three)."""
    if len(xs) == 1:
        return xs[0], xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], statistics.median(xs), q[2]


def ranks(scores: dict[str, float]) -> dict[str, float]:
    """Rank 1 for the highest score; ties share the average of their ranks."""
    ordered = sorted(scores.values(), reverse=True)
    return {m: statistics.mean(i + 1 for i, v in enumerate(ordered) if v == s) for m, s in scores.items()}


def summarize(task: Task, runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per box, method and budget: best validation and test accuracy (median, IQR), mean rank over
    seeds, and the epochs to reach random search's full-budget median."""
    by: dict[tuple[str, str, int], dict[int, tuple[float | None, float | None]]] = {}
    for r in runs:
        for b in task.budgets():
            if "budget" in r and r["budget"] != b:
                continue
            by.setdefault((r["box"], r["method"], b), {})[r["seed"]] = run_result(r, b)
    rows = []
    for box in BOXES:
        ref_vals = [v for v, _ in by.get((box, REFERENCE, task.budget), {}).values() if v is not None]
        target = statistics.median(ref_vals) if ref_vals else None
        for b in task.budgets():
            methods = [m for m in method_order(runs) if (box, m, b) in by]
            seeds = sorted(set.intersection(*(set(by[(box, m, b)]) for m in methods))) if methods else []
            seed_ranks = [
                ranks(
                    {m: by[(box, m, b)][s][0] if by[(box, m, b)][s][0] is not None else -1.0 for m in methods}
                )
                for s in seeds
            ]
            for m in methods:
                vals = [v for v, _ in by[(box, m, b)].values() if v is not None]
                tests = [t for _, t in by[(box, m, b)].values() if t is not None]
                q1, med, q3 = quartiles(vals) if vals else (None, None, None)
                t1, tmed, t3 = quartiles(tests) if tests else (None, None, None)
                rows.append(
                    {
                        "box": box,
                        "method": m,
                        "budget": b,
                        "runs": len(vals),
                        "val": [q1, med, q3],
                        "test": [t1, tmed, t3],
                        "rank": statistics.mean(r[m] for r in seed_ranks) if seed_ranks else None,
                        "reach": _reach(task, runs, box, m, target) if b == task.budget else None,
                    }
                )
    return {"table": rows}


def _reach(
    task: Task, runs: Sequence[dict[str, Any]], box: str, method: str, target: float | None
) -> dict[str, Any] | None:
    """Epochs the median run needs to reach ``target`` (a run that never does counts as never)."""
    if target is None:
        return None
    mine = [
        r
        for r in runs
        if r["box"] == box and r["method"] == method and r.get("budget", task.budget) == task.budget
    ]
    counts = [epochs_to_reach(curve(r["trials"]), target) for r in mine]
    med = statistics.median(math.inf if c is None else c for c in counts) if counts else math.inf
    return {
        "target": target,
        "epochs": None if math.isinf(med) else med,
        "reached": sum(c is not None for c in counts),
        "runs": len(counts),
    }


# ---------------------------------------------------------------------------------------------
# Output


def _fmt(q: Sequence[float | None]) -> str:
    return "-" if q[1] is None else f"{q[1]:.3f} [{q[0]:.3f}, {q[2]:.3f}]"


def task_tables(task: Task, summary: dict[str, Any]) -> list[str]:
    """Markdown: one table per box, rows by budget and method."""
    lines = []
    for box in BOXES:
        rows = [r for r in summary["table"] if r["box"] == box]
        if not rows:
            continue
        lines += [f"**{box} box**: " + _box_text(task, box), ""]
        lines += [
            "| budget (full trials) | method | best val, median [IQR] "
            "| winner's test acc, median [IQR] | mean rank | epochs to random's result |"
        ]
        lines += ["| --- | --- | --- | --- | --- | --- |"]
        for r in rows:
            reach = r["reach"]
            reach_text = ""
            if reach is not None:
                e = reach["epochs"]
                reach_text = (
                    "never" if e is None else f"{e / task.budget:.2f} x"
                ) + f" ({reach['reached']}/{reach['runs']})"
            rank = "-" if r["rank"] is None else f"{r['rank']:.2f}"
            cells = [str(r["budget"] // task.epochs), r["method"], _fmt(r["val"]), _fmt(r["test"]), rank]
            lines.append("| " + " | ".join([*cells, reach_text]) + " |")
        lines.append("")
    return lines


def _box_text(task: Task, box: str) -> str:
    parts = []
    for name, p in task.boxes[box].items():
        if p["type"] == "categorical":
            parts.append(f"{name} in {{{', '.join(map(str, p['choices']))}}}")
        else:
            scale = " (log)" if p.get("log") else ""
            parts.append(f"{name} in [{p['low']:g}, {p['high']:g}]{scale}")
    return "; ".join(parts)


def draw(task: Task, runs: Sequence[dict[str, Any]], path: Path) -> None:
    """Median best-so-far validation accuracy against cumulative epochs, one panel per box."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    boxes = [b for b in BOXES if any(r["box"] == b for r in runs)]
    fig, axes = plt.subplots(
        1, len(boxes), figsize=(6.5 * len(boxes), 4.6), layout="constrained", squeeze=False
    )
    grid = [task.budget * k // 100 for k in range(1, 101)]
    for ax, box in zip(axes[0], boxes, strict=True):
        floor = 1.0
        for m in method_order(runs):
            # One colour per method in every figure: its place in METHODS (others after them).
            i = (METHODS.index(m) if m in METHODS else len(METHODS) + method_order(runs).index(m)) % 10
            mine = [
                r
                for r in runs
                if r["box"] == box and r["method"] == m and r.get("budget", task.budget) == task.budget
            ]
            if not mine:
                continue
            series = [[at_budget(curve(r["trials"]), g)[0] for r in mine] for g in grid]
            xs, med, lo, hi = [], [], [], []
            for g, vals in zip(grid, series, strict=True):
                got = [v for v in vals if v is not None]
                if len(got) * 2 <= len(vals):
                    continue  # fewer than half the runs have a result yet
                q1, q2, q3 = quartiles(sorted(got))
                xs.append(g / task.epochs)
                med.append(q2), lo.append(q1), hi.append(q3)
            narrowing = "budget" in mine[0]
            ax.plot(
                xs,
                med,
                color=f"C{i}",
                linewidth=2.2 if narrowing else 1.2,
                linestyle="-" if narrowing else "--",
                label=m,
            )
            ax.fill_between(xs, lo, hi, color=f"C{i}", alpha=0.10)
            if med:
                floor = min(floor, med[len(med) // 3])
        ax.set_xlabel(f"cumulative epochs, in full trials of {task.epochs} epochs")
        ax.set_ylabel("best validation accuracy so far")
        ax.set_title(textwrap.fill(f"{box} box: {_box_text(task, box)}", 80), fontsize=8)
        ax.set_ylim(bottom=max(0.0, floor - 0.05))
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{task.title} (median of the seeds; band: IQR)", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def compact(run: dict[str, Any]) -> dict[str, Any]:
    """A run as stored in the results file: per trial only what the summaries read (a test
    accuracy only where the trial improved the best so far, numbers to 4 decimals). Idempotent."""
    keep = {k: run[k] for k in ("task", "box", "method", "seed", "seconds") if k in run}
    if "budget" in run:
        keep["budget"], keep["winner"] = run["budget"], run.get("winner")
        keep["windows"] = run.get("spaces", run.get("windows"))
    trials, best = [], -math.inf
    for t in run["trials"]:
        row = {k: t[k] for k in ("epochs", "stage", "parent") if t.get(k) is not None}
        row["value"] = None if t["value"] is None else round(t["value"], 4)
        if t["value"] is not None and t["value"] > best:
            best = t["value"]
            if t.get("test") is not None:
                row["test"] = round(t["test"], 4)
        trials.append(row)
    keep["trials"] = trials
    return keep


# ---------------------------------------------------------------------------------------------


def run_task(args: argparse.Namespace) -> None:
    from hpo._blas import configure_blas  # stdlib only: NumPy is not imported yet

    configure_blas(1)  # the pool processes inherit it: one BLAS thread each, hpo's kernels
    task = TASKS[args.task]
    if args.trials:
        task = dataclasses.replace(task, trials=args.trials)
    seeds = 3 if args.quick else args.seeds
    from concurrent.futures import ProcessPoolExecutor  # after the path fix above

    from bench._quality_runs import run_job

    with tempfile.TemporaryDirectory(prefix="hpo-quality-data-") as data_dir:
        write_data_files(Path(data_dir))
        variants = {**NARROWING_METHODS, **dict(args.variant)}
        jobs = make_jobs(task, [*args.methods, *dict(args.variant)], seeds, args.boxes, data_dir, variants)
        # Longest first, so that the pool does not end on one long run.
        jobs.sort(key=lambda j: -j.get("budget", task.budget))
        start = time.perf_counter()
        with ProcessPoolExecutor(args.processes) as pool:
            runs = list(pool.map(run_job, jobs))
        seconds = time.perf_counter() - start
    trials = sum(len(r["trials"]) for r in runs)
    print(f"{task.name}: {len(runs)} runs, {trials} trials in {seconds:.0f} s on {args.processes} processes")
    out = args.out or RESULTS / f"search-quality-{task.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    runs = [compact(r) for r in runs]
    methods = list(dict.fromkeys(r["method"] for r in runs))
    if args.merge and out.exists():
        # Keep the file's runs of the methods not run now (same seeds and budget only).
        old = json.loads(out.read_text())
        if (old["seeds"], old.get("trials", task.trials)) != (seeds, task.trials):
            raise SystemExit(f"--merge: {out} has {old['seeds']} seeds of {old.get('trials')} trials")
        runs += [r for r in old["runs"] if r["method"] not in methods]
        methods = list(dict.fromkeys([*old["methods"], *methods]))
        seconds += old["seconds"]
    summary = summarize(task, runs)
    print("\n".join(task_tables(task, summary)))
    doc = {
        "timestamp_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "task": task.name,
        "seeds": seeds,
        "trials": task.trials,
        "methods": methods,
        "seconds": round(seconds, 1),
        "processes": args.processes,
        "summary": summary,
        "runs": runs,
    }
    out.write_text(json.dumps(doc, separators=(",", ":")))
    figure = args.figure or FIGURES / f"search-quality-{task.name}.png"
    figure.parent.mkdir(parents=True, exist_ok=True)
    draw(task, runs, figure)
    print(f"wrote {out} and {figure}")


def _variant(text: str) -> tuple[str, dict[str, Any]]:
    name, _, spec = text.partition("=")
    return name, json.loads(spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS))
    parser.add_argument("--report", action="store_true", help="print the tables of the results files")
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 (default 10)")
    parser.add_argument("--quick", action="store_true", help="3 seeds")
    parser.add_argument("--boxes", nargs="+", choices=BOXES, default=list(BOXES))
    parser.add_argument("--methods", nargs="*", choices=METHODS, default=list(METHODS))
    parser.add_argument(
        "--trials", type=int, default=None, help="budget in full trials (default: the task's)"
    )
    parser.add_argument(
        "--variant",
        type=_variant,
        action="append",
        default=[],
        metavar="NAME=JSON",
        help='another narrowing method, e.g. fast=\'{"schedule": "equal", "narrowing": {"pan_growth": 2}}\'',
    )
    parser.add_argument("--processes", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument(
        "--merge", action="store_true", help="keep the results file's runs of the methods not run now"
    )
    parser.add_argument("--out", type=Path, default=None, help="results file (default docs/results/...)")
    parser.add_argument("--figure", type=Path, default=None, help="PNG (default docs/img/...)")
    args = parser.parse_args()
    if args.report:
        from bench._quality_report import report

        print(report(sorted(RESULTS.glob("search-quality-*.json"))))
    elif args.task:
        run_task(args)
    else:
        parser.error("give --task or --report")


if __name__ == "__main__":
    main()
