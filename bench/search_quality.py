"""Does staged narrowing find better hyperparameters? Narrowing against Optuna's random and TPE samplers.

Usage::

    python bench/search_quality.py [--protocol book|large-val] [--budgets 50 100 200] [--seeds 10]
        [--methods narrowing narrowing-confined random tpe] [--rule top_fraction=0.25 ...]
        [--stages 0.4 0.3 0.3] [--processes N] [--json PATH] [--figure PATH]

The study is the book's ch. 6.5 search (``examples/mnist-book-random.yaml``): lr in 10^[-6, -2] and
weight decay in 10^[-8, -4] on a log scale, 50 epochs of SGD on a 784-[100]x6-10 ReLU network.
Two protocols: ``book`` (500 MNIST images: 400 train / 100 validation, as the book) and
``large-val`` (3000 images: 2000 train / 1000 validation: 100 validation images score a trial to
about +-0.05, which best-of-N selection turns into optimism). Both keep hpo's 2000-image test split.

Methods, each run once per seed and budget (trial seeds are the study's, as hpo derives them):

- ``narrowing``: hpo's staged narrowing with the defaults (stages of ``--stages`` x budget, all
  at 50 epochs, so equal budgets are equal compute), run by hpo itself (its storage, ``advance``
  and ``run_trial``, one process per run). The lr window may pan past the book's 1e-2.
- ``narrowing-confined``: the same, with ``bounds`` equal to the declared ranges (no panning out:
  the same box as the other samplers).
- ``random``, ``tpe``: Optuna's ``RandomSampler(seed)`` and ``TPESampler(seed)`` (defaults) in a
  plain ``study.optimize`` loop over the same training code. One run at the largest budget; a
  smaller budget is its first trials (both samplers' choices do not depend on the budget).
- ``random-wide``, ``tpe-wide``: the same with lr in 10^[-6, 0], the box a user would need to
  give them to reach where narrowing pans to.

Reported per method and budget, over the seeds: the median and interquartile range of the best
validation accuracy, the median test accuracy of the winner (retrained with its seed), and the
trials needed to reach the median best of random search at 100 trials. Runs are spread over
``--processes`` processes (default: the cores), one BLAS thread each.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
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

import yaml  # noqa: E402

BOOK = ROOT / "examples" / "mnist-book-random.yaml"
PROTOCOLS: dict[str, dict[str, Any]] = {
    "book": {"subset": 500, "val_fraction": 0.2},
    "large-val": {"subset": 3000, "val_fraction": 1 / 3},
}
RANGES = {"lr": (1e-6, 1e-2), "weight_decay": (1e-8, 1e-4)}
# What a user who knows the good lr may lie above the book's 1e-2 might give random search instead.
WIDE_RANGES = {"lr": (1e-6, 1.0), "weight_decay": (1e-8, 1e-4)}
METHODS = ("narrowing", "narrowing-confined", "random", "tpe", "random-wide", "tpe-wide")
DEFAULT_STAGES = (0.25, 0.25, 0.25, 0.25)
REFERENCE_BUDGET = 100  # "trials to reach random search's result at this budget"


def study_dict(protocol: str, seed: int, name: str) -> dict[str, Any]:
    """The book's study under ``protocol``, as a spec dict (one random stage of 100 trials)."""
    spec = yaml.safe_load(BOOK.read_text())
    spec["name"], spec["seed"] = name, seed
    # The copy is written elsewhere: its relative data path is the example file's.
    spec["dataset"]["path"] = str((BOOK.parent / spec["dataset"]["path"]).resolve())
    spec["dataset"] |= PROTOCOLS[protocol]
    return spec


def stage_sizes(budget: int, fractions: Sequence[float]) -> list[int]:
    """Split ``budget`` trials into stages by ``fractions`` (the last stage takes the rounding)."""
    sizes = [max(1, round(budget * f)) for f in fractions[:-1]]
    return [*sizes, budget - sum(sizes)]


def narrowing_dict(
    protocol: str, seed: int, budget: int, fractions: Sequence[float], rule: dict[str, Any], confined: bool
) -> dict[str, Any]:
    spec = study_dict(protocol, seed, f"q-{protocol}-{seed}-{budget}")
    search = spec["search"]
    search["sampler"] = "narrowing"
    search["stages"] = [
        {"trials": n, "epochs": spec["training"]["epochs"]} for n in stage_sizes(budget, fractions)
    ]
    if rule:
        search["narrowing"] = dict(rule)
    if confined:
        for name, (low, high) in RANGES.items():
            search["parameters"][name]["bounds"] = [low, high]
    return spec


# ---------------------------------------------------------------------------------------------
# One run (in a pool process)


def _run_narrowing(job: dict[str, Any]) -> dict[str, Any]:
    """A narrowing study run by hpo's own machinery in this process, on a SQLite file."""
    from hpo.orchestration import run_trial, submit_study
    from hpo.spec import StudySpec
    from hpo.storage import Storage

    spec = StudySpec.model_validate(
        narrowing_dict(
            job["protocol"],
            job["seed"],
            job["budget"],
            job["stages"],
            job["rule"],
            job["method"] != "narrowing",
        )
    )
    with tempfile.TemporaryDirectory(prefix="hpo-quality-") as tmp:
        storage = Storage(f"sqlite:///{Path(tmp) / 'q.db'}")
        storage.upgrade()
        study, _ = submit_study(storage, spec)
        cache: dict[str, Any] = {}
        while (trial := storage.claim_next(study.id, "quality", 3600.0)) is not None:
            run_trial(storage, trial, "quality", data_cache=cache)
        study = storage.get_study_by_id(study.id)
        trials = sorted(storage.trials(study.id), key=lambda t: t.number)
        spaces = [json.loads(s.space) for s in storage.stages(study.id)]
        storage.dispose()
    if study.state != "COMPLETE":
        raise RuntimeError(f"{spec.name} ended {study.state}: {study.reason}")
    from hpo.orchestration import TestResult

    test = TestResult.from_dict(study.test_result)
    return {
        **job,
        "values": [t.value for t in trials],
        "params": [t.params for t in trials],
        "stages_of": [t.stage for t in trials],
        "spaces": spaces,
        "tests": {str(job["budget"]): None if test is None else test.test_acc},
    }


def _run_optuna(job: dict[str, Any]) -> dict[str, Any]:
    """Optuna's sampler in a plain ``study.optimize`` loop over hpo's training code."""
    import optuna

    from hpo.orchestration import load_data, objective_value, train_network
    from hpo.spec import StudySpec

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    seed, budget = job["seed"], max(job["budgets"])
    spec = StudySpec.model_validate(study_dict(job["protocol"], seed, f"q-{job['method']}-{seed}"))
    data = load_data(spec.dataset, spec.training.dtype)

    def train_spec(params: dict[str, Any], number: int) -> Any:
        return spec.trial_spec(params, 0, seed=spec.trial_seed(number))

    def objective(trial: optuna.Trial) -> float:
        ranges = WIDE_RANGES if job["method"].endswith("-wide") else RANGES
        params = {name: trial.suggest_float(name, lo, hi, log=True) for name, (lo, hi) in ranges.items()}
        run = train_network(train_spec(params, trial.number), data=data)
        value = objective_value(spec, run.result.history)
        return math.nan if value is None else value  # NaN: Optuna records a failed trial

    random = job["method"].startswith("random")
    sampler_cls = optuna.samplers.RandomSampler if random else optuna.samplers.TPESampler
    study = optuna.create_study(direction="maximize", sampler=sampler_cls(seed=seed))
    study.optimize(objective, n_trials=budget)
    trials = sorted(study.trials, key=lambda t: t.number)
    values = [t.value if t.state == optuna.trial.TrialState.COMPLETE else None for t in trials]
    tests = {}
    for b in job["budgets"]:  # the winner of each budget's first trials, retrained with its seed
        best = _argbest(values[:b])
        if best is not None:
            tests[str(b)] = train_network(train_spec(trials[best].params, best), data=data).test_accuracy()
    return {**job, "values": values, "params": [t.params for t in trials], "tests": tests}


def _argbest(values: Sequence[float | None]) -> int | None:
    scored = [(v, -i) for i, v in enumerate(values) if v is not None]
    return -max(scored)[1] if scored else None


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    start = time.perf_counter()
    out = _run_narrowing(job) if job["method"].startswith("narrowing") else _run_optuna(job)
    out["seconds"] = round(time.perf_counter() - start, 2)
    return out


# ---------------------------------------------------------------------------------------------
# Summaries


def best_so_far(values: Sequence[float | None]) -> list[float]:
    out, best = [], -math.inf
    for v in values:
        if v is not None and v > best:
            best = v
        out.append(best)
    return out


def trials_to_reach(values: Sequence[float | None], target: float) -> int | None:
    for n, best in enumerate(best_so_far(values), start=1):
        if best >= target:
            return n
    return None


def _quartiles(xs: Sequence[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) > 1 else [xs[0]] * 3
    return q[0], statistics.median(xs), q[2]


def summarize(runs: list[dict[str, Any]], budgets: Sequence[int]) -> dict[str, Any]:
    """Per method and budget: best validation accuracy, winners' test accuracy, trials to reach."""
    curves: dict[tuple[str, int], list[list[float | None]]] = {}
    tests: dict[tuple[str, int], list[float]] = {}
    for r in runs:
        for b in budgets:
            if r["method"].startswith("narrowing"):
                if r["budget"] != b:
                    continue
                values = r["values"]
            else:
                values = r["values"][:b]
            curves.setdefault((r["method"], b), []).append(values)
            t = r["tests"].get(str(b))
            if t is not None:
                tests.setdefault((r["method"], b), []).append(t)
    reference = None
    ref_runs = curves.get(("random", REFERENCE_BUDGET))
    if ref_runs:
        reference = statistics.median(best_so_far(v)[-1] for v in ref_runs)
    table = []
    for (method, b), runs_values in sorted(
        curves.items(), key=lambda kv: (kv[0][1], METHODS.index(kv[0][0]))
    ):
        bests = [best_so_far(v)[-1] for v in runs_values]
        q1, med, q3 = _quartiles(bests)
        reach = [trials_to_reach(v, reference) for v in runs_values] if reference is not None else []
        reached = sorted(n for n in reach if n is not None)
        table.append(
            {
                "method": method,
                "budget": b,
                "runs": len(bests),
                "best_val_median": round(med, 4),
                "best_val_q1": round(q1, 4),
                "best_val_q3": round(q3, 4),
                "best_val_min": round(min(bests), 4),
                "best_val_max": round(max(bests), 4),
                "test_median": round(statistics.median(tests[(method, b)]), 4)
                if tests.get((method, b))
                else None,
                "reached_reference": f"{len(reached)}/{len(reach)}",
                "trials_to_reference_median": _median_or_none(reach),
            }
        )
    return {"reference_random_best_at_100": reference, "table": table}


def _median_or_none(counts: Sequence[int | None]) -> float | None:
    """The median run's count, a run that never got there counting as infinitely many (None if
    that is the median)."""
    if not counts:
        return None
    median = statistics.median(math.inf if n is None else n for n in counts)
    return None if math.isinf(median) else median


def print_table(summary: dict[str, Any]) -> None:
    ref = summary["reference_random_best_at_100"]
    print(f"reference: median best val of random search at {REFERENCE_BUDGET} trials = {ref}")
    head = (
        f"{'method':<20}{'budget':>7}{'best val (median [IQR])':>28}{'test':>8}{'reach ref':>11}{'trials':>8}"
    )
    print(head)
    for row in summary["table"]:
        iqr = f"{row['best_val_median']:.3f} [{row['best_val_q1']:.3f}, {row['best_val_q3']:.3f}]"
        test = "-" if row["test_median"] is None else f"{row['test_median']:.3f}"
        trials = (
            "-" if row["trials_to_reference_median"] is None else f"{row['trials_to_reference_median']:g}"
        )
        print(
            f"{row['method']:<20}{row['budget']:>7}{iqr:>28}{test:>8}{row['reached_reference']:>11}{trials:>8}"
        )


def draw(runs: list[dict[str, Any]], summary: dict[str, Any], budgets: Sequence[int], path: Path) -> None:
    """Median best-so-far validation accuracy against trials, per method (largest budget)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    b = max(budgets)
    fig, ax = plt.subplots(figsize=(7.5, 4.5), layout="constrained")
    for i, method in enumerate(METHODS):
        series = [
            best_so_far(r["values"][:b]) for r in runs if r["method"] == method and r.get("budget", b) == b
        ]
        series = [s for s in series if len(s) == b]
        if not series:
            continue
        med = [statistics.median(s[n] for s in series) for n in range(b)]
        lo = [sorted(s[n] for s in series)[len(series) // 4] for n in range(b)]
        hi = [sorted(s[n] for s in series)[(3 * len(series)) // 4] for n in range(b)]
        xs = range(1, b + 1)
        ax.plot(xs, med, color=f"C{i}", label=f"{method} (median of {len(series)})")
        ax.fill_between(xs, lo, hi, color=f"C{i}", alpha=0.15)
    ref = summary["reference_random_best_at_100"]
    if ref is not None:
        ax.axhline(
            ref, color="grey", linestyle=":", label=f"random's median best at {REFERENCE_BUDGET} trials"
        )
    ax.set_xlabel("trials")
    ax.set_ylabel("best validation accuracy so far")
    ax.set_ylim(bottom=max(0.0, (ref or 0.5) - 0.4))
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"best validation accuracy vs trials ({runs[0]['protocol']} protocol; band: IQR over seeds)")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def stage_windows(run: dict[str, Any], name: str) -> list[tuple[float, float]]:
    """``(low, high)`` of parameter ``name`` in each stage a narrowing run sampled from."""
    out = []
    for space in run["spaces"]:
        [dist] = [p["distribution"]["attributes"] for p in space["params"] if p["name"] == name]
        out.append((dist["low"], dist["high"]))
    return out


def draw_windows(runs: list[dict[str, Any]], path: Path) -> None:
    """The recovery case: each narrowing run's lr and weight-decay windows per stage (largest
    budget), against the book's ranges, with every run's winner."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mine = [r for r in runs if r["method"] == "narrowing"]
    budget = max(r["budget"] for r in mine)
    mine = [r for r in mine if r["budget"] == budget]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    for ax, name in zip(axes, RANGES, strict=True):
        low, high = RANGES[name]
        ax.axvspan(low, high, color="grey", alpha=0.12, label="the book's range")
        for i, r in enumerate(mine):
            windows = stage_windows(r, name)
            for stage, (lo, hi) in enumerate(windows):
                y = stage + (i - len(mine) / 2) * 0.6 / len(mine)
                ax.hlines(y, lo, hi, color=f"C{stage}", linewidth=1.6)
            best = _argbest(r["values"])
            if best is not None:
                y = len(windows) - 1 + (i - len(mine) / 2) * 0.6 / len(mine)
                ax.plot(r["params"][best][name], y, "k|", markersize=7)
        ax.set_xscale("log")
        ax.set_yticks(range(len(stage_windows(mine[0], name))))
        ax.set_yticklabels([f"stage {k + 1}" for k in range(len(stage_windows(mine[0], name)))])
        ax.invert_yaxis()
        ax.set_xlabel(name)
        ax.legend(fontsize=8, loc="lower left")
    fig.suptitle(
        f"narrowing from the book's ranges: each line one seed's window per stage ({budget} trials); "
        "| marks the winner",
        fontsize=10,
    )
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------


def _rule(items: Sequence[str]) -> dict[str, Any]:
    rule: dict[str, Any] = {}
    for item in items:
        key, _, value = item.partition("=")
        rule[key] = {"true": True, "false": False}.get(value.lower())
        if rule[key] is None:
            rule[key] = int(value) if value.isdigit() else float(value)
    return rule


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="book")
    parser.add_argument("--budgets", type=int, nargs="+", default=[50, 100, 200])
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 (default 10)")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument(
        "--rule", nargs="*", default=[], help="narrowing rule overrides, e.g. top_fraction=0.2"
    )
    parser.add_argument(
        "--stages", type=float, nargs="+", default=list(DEFAULT_STAGES), help="budget fractions"
    )
    parser.add_argument("--processes", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--figure", type=Path, default=None, help="PNG of best-so-far against trials")
    parser.add_argument("--windows-figure", type=Path, default=None, help="PNG of narrowing's windows")
    args = parser.parse_args()
    from hpo._blas import configure_blas  # stdlib only: NumPy is not imported yet

    configure_blas(1)  # the pool processes inherit it: one BLAS thread each, hpo's kernels
    if abs(sum(args.stages) - 1) > 1e-9:
        raise SystemExit("--stages must sum to 1")
    jobs: list[dict[str, Any]] = []
    common = {"protocol": args.protocol, "stages": args.stages, "rule": _rule(args.rule)}
    for seed in range(args.seeds):
        for method in args.methods:
            if method.startswith("narrowing"):
                jobs += [{**common, "method": method, "seed": seed, "budget": b} for b in args.budgets]
            else:
                jobs.append({**common, "method": method, "seed": seed, "budgets": args.budgets})
    # Longest first, so that the pool does not end on one long run.
    jobs.sort(key=lambda j: -(j.get("budget") or max(j["budgets"])))
    from concurrent.futures import ProcessPoolExecutor  # after the path fix above

    start = time.perf_counter()
    with ProcessPoolExecutor(args.processes) as pool:
        runs = list(pool.map(run_job, jobs))
    seconds = time.perf_counter() - start
    summary = summarize(runs, args.budgets)
    print(f"{len(runs)} runs, {sum(len(r['values']) for r in runs)} trials in {seconds:.0f} s")
    print_table(summary)
    if args.figure:
        args.figure.parent.mkdir(parents=True, exist_ok=True)
        draw(runs, summary, args.budgets, args.figure)
    if args.windows_figure and any(r["method"] == "narrowing" for r in runs):
        args.windows_figure.parent.mkdir(parents=True, exist_ok=True)
        draw_windows(runs, args.windows_figure)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "timestamp_utc": datetime.now(UTC).isoformat(timespec="seconds"),
                    "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                    "seconds": round(seconds, 1),
                    "summary": summary,
                    "runs": runs,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
