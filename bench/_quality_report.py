"""``bench/search_quality.py --report``: the tables of every task's results file, the average ranks
across tasks, and the goals of issue 13, in Markdown."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench._quality_tasks import METHODS, NARROWING_METHODS, OPTUNA_METHODS, task_of

DEFAULT = "narrowing"
"""The method hpo's defaults run (``search.trials: N`` with the narrowing sampler)."""

BUDGET_NAMES = ("a quarter", "half", "all")


def _load(paths: Sequence[Path]) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in paths]


def report(paths: Sequence[Path]) -> str:
    """The Markdown report of the results files ``paths``."""
    from bench.search_quality import BOXES, summarize, task_tables

    docs = _load(paths)
    lines: list[str] = [
        "# Search quality: every table",
        "",
        "Written by `python bench/search_quality.py --report` from the results files next to this one",
        "(docs/search-quality.md says how they are made and reads them).",
        "",
    ]
    for doc in docs:
        task = task_of({"task": doc["task"], "trials": _trials(doc)})
        lines += [f"### {doc['task']}: {task.title}", ""]
        lines += [
            f"{doc['seeds']} seeds; {len(doc['runs'])} runs in {doc['seconds']:.0f} s "
            f"on {doc['processes']} processes.",
            "",
        ]
        lines += task_tables(task, doc["summary"])
    lines += _overview(docs)
    common = [m for m in METHODS if all(m in d["methods"] and _has(d, m) for d in docs)]
    lines += ["### Average rank across tasks", ""]
    lines += _rank_table(docs, common, BOXES, summarize)
    lines += ["### Goals", ""]
    lines += _goals(docs)
    return "\n".join(lines)


def overview_methods(docs: Sequence[dict[str, Any]]) -> list[str]:
    """Every method any results file has, in :data:`METHODS` order."""
    seen = {r["method"] for d in docs for r in d["runs"]}
    return [m for m in METHODS if m in seen] + sorted(seen - set(METHODS))


def _overview(docs: Sequence[dict[str, Any]]) -> list[str]:
    """Per budget, one table: task and box by method, the median best validation accuracy (the
    best method's in bold)."""
    methods = overview_methods(docs)
    lines = ["### Overview: median best validation accuracy", ""]
    for k, name in enumerate(BUDGET_NAMES):
        lines += [f"**{name} of the budget**", "", "| task, box | " + " | ".join(methods) + " |"]
        lines.append("|" + " --- |" * (1 + len(methods)))
        for doc in docs:
            task = task_of({"task": doc["task"], "trials": _trials(doc)})
            b = task.budgets()[k]
            for box in ("user", "low"):
                rows = {
                    r["method"]: r for r in doc["summary"]["table"] if r["box"] == box and r["budget"] == b
                }
                if not rows:
                    continue
                best = max((r["val"][1] for r in rows.values() if r["val"][1] is not None), default=None)
                cells = []
                for m in methods:
                    v = rows.get(m, {}).get("val", [None, None])[1]
                    cells.append("-" if v is None else (f"**{v:.3f}**" if v == best else f"{v:.3f}"))
                lines.append(f"| {doc['task']}, {box} ({b // task.epochs}) | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _trials(doc: dict[str, Any]) -> int:
    if "trials" in doc:
        return int(doc["trials"])
    task = task_of({"task": doc["task"]})
    full = max(r.get("budget", 0) for r in doc["runs"]) or task.budget
    return full // task.epochs


def _has(doc: dict[str, Any], method: str) -> bool:
    return any(r["method"] == method for r in doc["runs"])


def _rank_table(
    docs: Sequence[dict[str, Any]], methods: Sequence[str], boxes: Sequence[str], summarize: Any
) -> list[str]:
    """Mean rank per method (ranked among ``methods`` per task, box, budget and seed), averaged
    over tasks, per box and budget; [min, max] over the tasks in brackets."""
    per: dict[tuple[str, str, int], list[float]] = {}  # (box, method, budget index) -> task ranks
    for doc in docs:
        task = task_of({"task": doc["task"], "trials": _trials(doc)})
        runs = [r for r in doc["runs"] if r["method"] in methods]
        for row in summarize(task, runs)["table"]:
            if row["rank"] is not None:
                per.setdefault((row["box"], row["method"], task.budgets().index(row["budget"])), []).append(
                    row["rank"]
                )
    head = "| method | " + " | ".join(f"{box} box, {b} budget" for box in boxes for b in BUDGET_NAMES) + " |"
    lines = [
        f"Ranked among {len(methods)} methods on {len(docs)} tasks ({', '.join(d['task'] for d in docs)}): "
        "mean of the per-task mean ranks over seeds, [best, worst] task in brackets; 1 is best.",
        "",
        head,
        "|" + " --- |" * (1 + len(boxes) * 3),
    ]
    for m in methods:
        cells = []
        for box in boxes:
            for k in range(3):
                xs = per.get((box, m, k), [])
                cells.append("-" if not xs else f"{statistics.mean(xs):.2f} [{min(xs):.1f}, {max(xs):.1f}]")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _goals(docs: Sequence[dict[str, Any]]) -> list[str]:
    lines = [
        "| task | default's epochs to random's full-budget median (user box) "
        "| default, low box, all budget | best baseline, user box, all budget | gap |",
        "| --- | --- | --- | --- | --- |",
    ]
    for doc in docs:
        task = task_of({"task": doc["task"], "trials": _trials(doc)})
        rows = {(r["box"], r["method"], r["budget"]): r for r in doc["summary"]["table"]}
        mine = rows.get(("user", DEFAULT, task.budget))
        reach = "-"
        if mine and mine["reach"]:
            e = mine["reach"]["epochs"]
            reach = "never" if e is None else f"{e / task.budget:.2f} x random's epochs"
        low = rows.get(("low", DEFAULT, task.budget))
        baselines = [
            rows[k]["val"][1]
            for k in rows
            if k[0] == "user"
            and k[1] in OPTUNA_METHODS
            and k[2] == task.budget
            and rows[k]["val"][1] is not None
        ]
        best = max(baselines) if baselines else None
        low_med = None if low is None else low["val"][1]
        gap = "-" if best is None or low_med is None else f"{low_med - best:+.3f}"
        lines.append(f"| {doc['task']} | {reach} | {_num(low_med)} | {_num(best)} | {gap} |")
    return [*lines, ""]


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


__all__ = ["DEFAULT", "NARROWING_METHODS", "report"]
