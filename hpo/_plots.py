"""The figure of ``hpo plot``: the best trials' learning curves and the search, per parameter.

The curves are the book's ch. 6.5 figure: one panel per top trial, validation (solid) against
training (dashed) in the objective's metric (accuracy, or loss for a ``val_loss`` study). The
search has one panel per searched parameter: every trial's score against its value, coloured by
stage, under a strip of bars showing the range each stage sampled.

:func:`read_plot_data` reads a study once; :func:`draw` turns it into a matplotlib
:class:`~matplotlib.figure.Figure` without pyplot (no global state, no GUI backend), which tests
inspect through its axes (:mod:`hpo._output` writes the file). Each axes carries a label naming
its role (``curve:RANK``, ``search:PARAM``, ``ranges:PARAM``) so callers can find it.
"""

from __future__ import annotations

import json
import math
import textwrap
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
from matplotlib.figure import Figure, SubFigure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullLocator

from engine import EpochRecord

from ._errors import HPOError
from .samplers import space_from_json
from .spec import CategoricalParameter, StudySpec
from .storage import Storage, TrialRow, TrialState

__all__ = ["PlotData", "StagePlan", "draw", "read_plot_data", "save"]

CURVE_COLUMNS = 5
"""Curve panels per row (the book's figure has 5 x 4)."""
SEARCH_COLUMNS = 3
"""Search panels per row."""
PANEL_WIDTH = 3.0
CURVE_HEIGHT = 2.2
SEARCH_HEIGHT = 2.9
STAGE_BAR_HEIGHT = 0.17
"""Inches per stage in the strip of stage ranges above each search panel."""
DPI = 100
FAIL_BAND = 0.08
"""Height of the band for failed trials at the bottom of a search panel, in axes fractions."""
JITTER = 0.28
"""Half-width of the horizontal jitter of categorical points, in choice columns."""


@dataclass(frozen=True, slots=True)
class StagePlan:
    """One stage as drawn: its trial count, epoch budget and the space it sampled."""

    index: int
    n_trials: int
    epochs: int
    space: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PlotData:
    """What the figure shows of one study, read in one go.

    Attributes:
        name: The study's name.
        state: The study's state (``COMPLETE``, ``RUNNING``...).
        spec: Its validated spec.
        stages: Its stages so far, in order.
        trials: Every trial, by number.
        best: The best ``COMPLETE`` trials, best first (at least one).
    """

    name: str
    state: str
    spec: StudySpec
    stages: list[StagePlan]
    trials: list[TrialRow]
    best: list[TrialRow]


def read_plot_data(storage: Storage, name: str, top: int) -> PlotData:
    """Read what the figure of study ``name`` needs, with its ``top`` best trials.

    Raises:
        StudyNotFoundError: No such study.
        HPOError: The study has no completed trial yet (nothing to draw).
    """
    from .orchestration import best_trials, study_spec

    study = storage.get_study(name)
    spec = study_spec(study)
    trials = storage.trials(study.id)
    best = best_trials(storage, study.id, spec, top)
    if not best:
        counts = Counter(t.state for t in trials)
        summary = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())) or "no trials"
        raise HPOError(f"study {name!r} has no completed trial to plot yet ({summary})")
    stages = [
        StagePlan(s.index, s.n_trials, s.epochs, space_from_json(json.loads(s.space)))
        for s in storage.stages(study.id)
    ]
    return PlotData(name, str(study.state), spec, stages, trials, best)


def save(figure: Figure, file: IO[bytes], fmt: str) -> None:
    """Write ``figure`` to ``file`` in format ``fmt`` (``png``, ``svg``, ``pdf``...)."""
    # optimize: zlib tries harder (a tenth smaller PNG, for a fraction of a second).
    options = {"pil_kwargs": {"optimize": True}} if fmt == "png" else {}
    figure.savefig(file, format=fmt, dpi=DPI, **options)


# --- the figure ------------------------------------------------------------------------------


def draw(data: PlotData, *, search: bool = True) -> Figure:
    """The figure: the best trials' curves, then (with ``search``) one panel per parameter."""
    # At least the search's width: a study's few best trials take part of a row.
    ccols = max(min(CURVE_COLUMNS, len(data.best)), SEARCH_COLUMNS if search else 2)
    crows = math.ceil(len(data.best) / ccols)
    params = data.spec.search.parameters
    scols = min(SEARCH_COLUMNS, len(params))
    srows = math.ceil(len(params) / scols)
    strip = STAGE_BAR_HEIGHT * len(data.stages) + 0.15
    curves_h = CURVE_HEIGHT * crows + 0.7
    search_h = (SEARCH_HEIGHT + strip) * srows + 0.9
    width = PANEL_WIDTH * ccols
    fig = Figure(figsize=(width, curves_h + (search_h if search else 0.0) + 0.4), layout="constrained")
    fig.suptitle(_summary(data, int(width * 11)), fontsize=11)
    # Each section in a subfigure of its own: a heading and legend per section, and the search's
    # grid independent of the curves'.
    if search:
        curves, searched = fig.subfigures(2, 1, height_ratios=[curves_h, search_h])
        _draw_search(searched, data, scols, strip)
    else:
        curves = fig.subfigures(1, 1)
    _draw_curves(curves, data, ccols)
    return fig


def _summary(data: PlotData, chars: int) -> str:
    """The figure's title, on two lines if it is longer than ``chars``."""
    counts = Counter(t.state for t in data.trials)
    done = ", ".join(f"{counts[s]} {s.lower()}" for s in ("COMPLETE", "PRUNED", "FAIL") if counts[s])
    waiting = counts["PENDING"] + counts["RUNNING"]
    n = len(data.stages)
    study = (
        f"{data.name} ({data.state.lower()}): {len(data.trials)} trials ({done}"
        + (f", {waiting} to run" if waiting else "")
        + f"), {n} stage{'s' if n != 1 else ''}, sampler {data.spec.search.sampler}"
    )
    objective = data.spec.objective
    goal = f"objective {objective.metric} ({objective.reduce}, {objective.direction})"
    return f"{study}; {goal}" if len(study) + len(goal) + 2 <= chars else f"{study}\n{goal}"


def _curve_keys(metric: str) -> tuple[str, str, str]:
    """The validation and training keys of the epoch records drawn, and the y axis' name."""
    if metric == "val_loss":
        return "val_loss", "train_loss", "loss"
    return "val_acc", "train_acc", "accuracy"


def _draw_curves(fig: SubFigure, data: PlotData, cols: int) -> None:
    metric = data.spec.objective.metric
    _, _, quantity = _curve_keys(metric)
    rows = math.ceil(len(data.best) / cols)
    grid = fig.add_gridspec(rows, cols)
    for rank, trial in enumerate(data.best, start=1):
        ax = fig.add_subplot(grid[(rank - 1) // cols, (rank - 1) % cols], label=f"curve:{rank}")
        _curve_panel(ax, trial, rank, metric)
    handles = [
        Line2D([], [], color="C0", linestyle="-", label=f"validation {quantity}"),
        Line2D([], [], color="C1", linestyle="--", label=f"train {quantity}"),
    ]
    n = len(data.best)
    _heading(
        fig,
        f"The {n} best trials' {quantity} per epoch" if n > 1 else f"The best trial's {quantity} per epoch",
        handles,
        ncols=2,
    )


def _heading(fig: SubFigure, title: str, handles: list[Line2D], ncols: int) -> None:
    # The section's title is its legend's: a suptitle and an outside legend of a subfigure overlap.
    width = fig.get_figure(root=True).get_figwidth()
    legend = fig.legend(
        handles=handles,
        loc="outside upper center",
        ncols=ncols,
        fontsize=8,
        frameon=False,
        title=textwrap.fill(title, int(width * 12)),
        title_fontsize=10,
        borderaxespad=0.2,
        alignment="center",
    )
    legend.get_title().set_multialignment("center")
    legend.set_in_layout(True)


def _curve_panel(ax: Any, trial: TrialRow, rank: int, metric: str) -> None:
    val_key, train_key, quantity = _curve_keys(metric)
    records = [EpochRecord.from_dict(c) for c in trial.curves or []]
    for key, style, color in ((val_key, "-", "C0"), (train_key, "--", "C1")):
        points = [(r.epoch, getattr(r, key)) for r in records if _finite(getattr(r, key))]
        if points:
            epochs, values = zip(*points, strict=True)
            ax.plot(epochs, values, style, color=color, linewidth=1.3)
    if not records:
        ax.text(0.5, 0.5, "no curves recorded", transform=ax.transAxes, ha="center", fontsize=8)
    ax.set_title(
        f"#{rank} trial {trial.number}, stage {trial.stage + 1}: {metric} {_short(trial.value)}",
        fontsize=8.5,
    )
    ax.set_xlabel("epoch", fontsize=8, labelpad=1)
    ax.set_ylabel(quantity, fontsize=8, labelpad=2)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
    ax.tick_params(labelsize=7, pad=1.5)
    ax.grid(alpha=0.25, linewidth=0.6)
    if quantity == "accuracy":
        ax.set_ylim(0, 1.02)  # 1.0 stays visible above the curves that reach it
    else:
        ax.set_ylim(bottom=0)
    _params_box(ax, trial.params)


def _params_box(ax: Any, params: dict[str, Any]) -> None:
    # A legend of text-only entries: matplotlib's loc="best" puts it where it hides the least of
    # the curves, which a plain text box cannot do.
    blank = Line2D([], [], linestyle="none")
    ax.legend(
        [blank] * len(params),
        [f"{k} = {_short(v)}" for k, v in params.items()],
        loc="best",
        fontsize=6.5,
        handlelength=0,
        handletextpad=0,
        borderpad=0.4,
        labelspacing=0.25,
        framealpha=0.85,
        edgecolor="0.75",
    )


def _short(value: Any) -> str:
    """A value for a label: floats to 4 significant digits."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# --- the search ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Point:
    """One finished trial in a search panel: its x (a choice's column for a categorical), its
    score (``None`` when it has none: a failed trial), and what it is drawn by."""

    number: int
    x: float
    y: float | None
    stage: int
    state: str


def _draw_search(fig: SubFigure, data: PlotData, cols: int, strip: float) -> None:
    params = _parameters(data)
    # Fewer parameters than columns: panels of the usual width, centred between spacers.
    spacer = (SEARCH_COLUMNS - cols) / 2
    ratios = [spacer, *([1.0] * cols), spacer] if spacer else [1.0] * cols
    grid = fig.add_gridspec(math.ceil(len(params) / cols), len(ratios), width_ratios=ratios)
    first = 1 if spacer else 0
    colors = _stage_colors(len(data.stages))
    for i, (name, param) in enumerate(params.items()):
        cell = grid[i // cols, first + i % cols].subgridspec(
            2, 1, height_ratios=[strip, SEARCH_HEIGHT], hspace=0
        )
        ax = fig.add_subplot(cell[1], label=f"search:{name}")
        ranges = fig.add_subplot(cell[0], sharex=ax, label=f"ranges:{name}")
        _search_panel(ax, ranges, name, param, data, colors, seed=i)
    handles = _search_legend(data, colors)
    title = (
        f"Each trial's {data.spec.objective.metric} against each searched parameter, coloured by "
        "stage; above each panel, the range each stage sampled"
    )
    _heading(fig, title, handles, ncols=min(len(handles), 5))


def _parameters(data: PlotData) -> dict[str, Any]:
    """The searched parameters in the study file's order (kept by the stored spaces; the stored
    spec's keys are sorted)."""
    params = data.spec.search.parameters
    order = [n for n in (data.stages[0].space if data.stages else {}) if n in params]
    return {n: params[n] for n in [*order, *(n for n in params if n not in order)]}


def _stage_colors(n: int) -> list[Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _marker(label: str, marker: str, color: Any, *, hollow: bool = False, size: float = 6) -> Line2D:
    return Line2D(
        [],
        [],
        linestyle="none",
        marker=marker,
        markersize=size,
        color=color,
        markerfacecolor="none" if hollow else color,
        label=label,
    )


def _search_legend(data: PlotData, colors: Sequence[Any]) -> list[Line2D]:
    handles = [
        _marker(f"stage {s.index + 1}: {s.n_trials} trials, {s.epochs} epochs", "o", colors[s.index])
        for s in data.stages
    ]
    handles.append(_marker(f"best: trial {data.best[0].number}", "*", "black", hollow=True, size=11))
    states = {t.state for t in data.trials}
    if "PRUNED" in states:
        handles.append(_marker("pruned (score when stopped)", "o", "0.3", hollow=True))
    if "FAIL" in states:
        handles.append(_marker("failed (no score: in the grey band)", "x", "0.3"))
    return handles


def _search_panel(
    ax: Any, ranges: Any, name: str, param: Any, data: PlotData, colors: Sequence[Any], seed: int
) -> None:
    points = _points(data, name, param)
    log = bool(getattr(param, "log", False))
    if log:
        ax.set_xscale("log")  # shared with the ranges above
    xs = np.array([p.x for p in points], dtype=float)
    if isinstance(param, CategoricalParameter):
        # A strip per choice, spread sideways; seeded, so a study always draws the same figure.
        xs = xs + np.random.default_rng(seed).uniform(-JITTER, JITTER, len(xs))
    _scatter(ax, points, xs, colors, data.best[0].number)
    spans = _stage_ranges(ranges, name, param, data, colors)
    _x_axis(ax, name, param, [*xs, *(v for span in spans for v in span)], log)
    scores = [p.y for p in points if p.y is not None]
    _y_axis(ax, scores, data.spec.objective.metric, failed=len(scores) < len(points))


def _points(data: PlotData, name: str, param: Any) -> list[_Point]:
    """The finished trials that have a value for ``name``, placed on the panel's axes."""
    columns = _choice_columns(param) if isinstance(param, CategoricalParameter) else None
    points = []
    for t in data.trials:
        if t.state not in ("COMPLETE", "PRUNED", "FAIL") or name not in t.params:
            continue
        value = t.params[name]
        x = columns.get(_choice_key(value)) if columns is not None else value
        if not _finite(x):
            continue
        pruned = t.state == TrialState.PRUNED
        y = t.value if t.state == TrialState.COMPLETE else _last_value(t) if pruned else None
        points.append(_Point(t.number, float(x), y, t.stage, t.state))
    return points


def _last_value(trial: TrialRow) -> float | None:
    values = [v for v in (trial.intermediate or {}).values() if math.isfinite(v)]
    return values[-1] if values else None


def _choice_key(choice: Any) -> tuple[bool, Any]:
    # True == 1 in Python: a bool choice and a number choice must not share a column.
    return isinstance(choice, bool), choice


def _choice_columns(param: CategoricalParameter) -> dict[tuple[bool, Any], int]:
    return {_choice_key(c): i for i, c in enumerate(param.choices)}


def _scatter(ax: Any, points: Sequence[_Point], xs: np.ndarray, colors: Sequence[Any], best: int) -> None:
    stages = np.array([p.stage for p in points], dtype=int)
    states = np.array([p.state for p in points], dtype=str)
    ys = np.array([np.nan if p.y is None else p.y for p in points], dtype=float)
    scored = np.isfinite(ys)
    below = ax.get_xaxis_transform()  # x in data, y in axes fractions: under every score
    for s in sorted(set(stages.tolist())):
        color = colors[s]
        # Labelled by what they show (the axes has no legend of its own; callers look them up).
        done = (stages == s) & (states == TrialState.COMPLETE.value)
        ax.scatter(
            xs[done], ys[done], s=20, color=color, alpha=0.85, edgecolors="white", linewidths=0.4,
            label=f"stage {s + 1}",
        )  # fmt: skip
        pruned = (stages == s) & (states == TrialState.PRUNED.value) & scored
        ax.scatter(
            xs[pruned], ys[pruned], s=20, facecolors="none", edgecolors=[color], linewidths=0.9,
            label=f"stage {s + 1} pruned",
        )  # fmt: skip
        failed = (stages == s) & ~scored
        ax.scatter(
            xs[failed], np.full(failed.sum(), FAIL_BAND / 2), s=22, marker="x", color=color,
            transform=below, label=f"stage {s + 1} failed",
        )  # fmt: skip
    at = [i for i, p in enumerate(points) if p.number == best]
    ax.scatter(
        xs[at], ys[at], s=150, marker="*", facecolors="none", edgecolors="black", linewidths=0.9, label="best"
    )


def _stage_ranges(
    ax: Any, name: str, param: Any, data: PlotData, colors: Sequence[Any]
) -> list[tuple[float, float]]:
    """Draw each stage's range of ``name`` as a bar on its own row; the spans drawn, in x."""
    columns = _choice_columns(param) if isinstance(param, CategoricalParameter) else None
    spans: list[tuple[float, float]] = []
    for stage in data.stages:
        dist = stage.space.get(name)
        if dist is None:
            continue
        if columns is not None:
            kept = [columns[k] for k in map(_choice_key, dist.choices) if k in columns]
            row = [(c - JITTER, c + JITTER) for c in kept]
        else:
            row = [(float(dist.low), float(dist.high))]
        for lo, hi in row:
            ax.barh(stage.index, hi - lo, left=lo, height=0.62, color=colors[stage.index])
            if hi == lo:  # an int range narrowed to one value: a bar of no width
                ax.plot([lo], [stage.index], "|", color=colors[stage.index], markersize=7)
        spans += row
    n = len(data.stages)
    ax.set_ylim(n - 0.5, -0.5)  # stage 1 on top
    ax.set_yticks(range(n), labels=[f"stage {i + 1}" for i in range(n)])
    ax.tick_params(axis="y", labelsize=6.5, length=0, pad=2)
    ax.tick_params(axis="x", which="both", labelbottom=False, bottom=False)
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    return spans


def _x_axis(ax: Any, name: str, param: Any, values: Sequence[float], log: bool) -> None:
    if isinstance(param, CategoricalParameter):
        labels = [str(c) for c in param.choices]
        long = len(labels) > 6 or max(map(len, labels)) > 8
        ax.set_xlim(-0.5, len(labels) - 0.5)
        ax.set_xticks(
            range(len(labels)), labels=labels, rotation=30 if long else 0, ha="right" if long else "center"
        )
    else:
        ax.set_xlim(*_padded(values, log, 0.05))
        if param.type == "int" and log:
            # 10, 20, 50, 100, ...: integers on a log axis, written as such (not 10^1).
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_locator(NullLocator())
        elif param.type == "int":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
    ax.set_xlabel(f"{name} (log scale)" if log else name, fontsize=8.5, labelpad=1)
    ax.tick_params(labelsize=7, pad=1.5)
    ax.grid(alpha=0.25, linewidth=0.6)


def _y_axis(ax: Any, scores: Sequence[float], metric: str, *, failed: bool) -> None:
    # A loss spanning decades (a diverging trial next to good ones) reads better on a log axis.
    log = metric == "val_loss" and bool(scores) and min(scores) > 0 and max(scores) > 30 * min(scores)
    if log:
        ax.set_yscale("log")
    ax.set_ylabel(metric, fontsize=8.5, labelpad=2)
    if not scores:
        return
    lo, hi = _padded(scores, log, 0.08)
    if not failed:
        ax.set_ylim(lo, hi)
        return
    # The failed trials' marks get a band of their own under the lowest score, without ticks.
    to_u, from_u = (math.log10, lambda u: 10**u) if log else (float, float)
    bottom = to_u(lo) - (to_u(hi) - to_u(lo)) * FAIL_BAND / (1 - FAIL_BAND)
    ax.set_ylim(lo, hi)
    ticks = [t for t in ax.get_yticks() if lo <= t <= hi]  # the ticks of the scores alone
    ax.set_ylim(from_u(bottom), hi)
    ax.set_yticks(ticks)
    ax.axhspan(from_u(bottom), lo, color="0.92", zorder=0, linewidth=0)


def _padded(values: Sequence[float], log: bool, margin: float) -> tuple[float, float]:
    """Limits holding every value with a margin (a fraction of their span), in log10 if ``log``."""
    u = [math.log10(v) if log else float(v) for v in values]
    lo, hi = min(u), max(u)
    span = hi - lo or (1.0 if log else abs(lo) * 0.2 or 1.0)
    lo, hi = lo - span * margin, hi + span * margin
    return (10**lo, 10**hi) if log else (lo, hi)
