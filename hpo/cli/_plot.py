"""``hpo plot``: the book's figure of the best trials' curves, and the search per stage."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ._app import app
from ._common import DbOption, fmt_value, open_storage
from ._console import err_console

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["plot"]


@app.command()
def plot(
    name: Annotated[str, typer.Argument(help="Study name.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="PNG file to write.")] = Path("curves.png"),
    top: Annotated[
        int, typer.Option("--top", "-k", help="How many best trials to draw.", min=1, max=100)
    ] = 20,
    search: Annotated[
        bool,
        typer.Option(
            "--search/--no-search", help="Also draw every sampled point per stage with the stage's ranges."
        ),
    ] = True,
    db: DbOption = None,
) -> None:
    """Draw the top trials' train (dashed) vs validation (solid) accuracy curves, as in the book's
    ch. 6.5 figure, and every sampled point per stage coloured by score with the stage's ranges.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.gridspec import GridSpec

    from hpo._orchestration import best_trials, study_spec
    from hpo.samplers import space_from_json

    storage = open_storage(db)
    study = storage.get_study(name)
    spec = study_spec(study)
    best = best_trials(storage, study.id, spec, top)
    cols = 5
    rows = max(1, math.ceil(len(best) / cols))
    extra = [0.15, 2.2] if search else []  # a spacer and the search panel
    fig = plt.figure(figsize=(3.2 * cols, 2.4 * rows + (5.5 if search else 0.6)), layout="constrained")
    grid = GridSpec(rows + len(extra), cols, figure=fig, height_ratios=[*([1.0] * rows), *extra])
    for i, trial in enumerate(best):
        ax = fig.add_subplot(grid[i // cols, i % cols])
        curves = [c for c in (trial.curves or []) if c.get("val_acc") is not None]
        epochs = [c["epoch"] for c in curves]
        ax.plot(epochs, [c["val_acc"] for c in curves], "-", color="C0", label="validation")
        ax.plot(epochs, [c["train_acc"] for c in curves], "--", color="C1", label="train")
        ax.set_ylim(0, 1.0)
        ax.set_title(f"Best-{i + 1} (val {fmt_value(trial.value)})", fontsize=9)
        ax.text(
            0.03,
            0.04,
            "\n".join(f"{k}={fmt_value(v)}" for k, v in trial.params.items()),
            transform=ax.transAxes,
            fontsize=7,
            va="bottom",
        )
        if i % cols:
            ax.set_yticklabels([])
        if i == 0:
            ax.legend(fontsize=7, loc="lower right")

    numeric = [n for n, p in spec.search.parameters.items() if p.type in ("float", "int")]
    trials = [t for t in storage.trials(study.id, states=("COMPLETE",)) if t.value is not None]
    stages = storage.stages(study.id)
    if search and len(numeric) >= 1:
        scatter_ax = fig.add_subplot(grid[rows + 1, :])
        _draw_search(
            scatter_ax, spec, numeric, trials, [space_from_json(json.loads(s.space)) for s in stages]
        )
    fig.suptitle(
        f"{name}: {len(trials)} finished trials, {len(stages)} stage(s), sampler {spec.search.sampler}"
    )
    fig.savefig(output, dpi=110)
    plt.close(fig)
    err_console().print(f"wrote {output}")


def _draw_search(
    ax: Axes, spec: Any, numeric: list[str], trials: list[Any], spaces: list[dict[str, Any]]
) -> None:
    from matplotlib.patches import Rectangle

    xname = numeric[0]
    yname = numeric[1] if len(numeric) > 1 else None
    xs = [t.params[xname] for t in trials]
    ys = [t.params[yname] for t in trials] if yname else [t.stage + 1 for t in trials]
    sc = ax.scatter(xs, ys, c=[t.value for t in trials], cmap="viridis", s=18, edgecolors="none")
    ax.figure.colorbar(sc, ax=ax, label=spec.objective.metric)
    params = spec.search.parameters
    if getattr(params[xname], "log", False):
        ax.set_xscale("log")
    if yname and getattr(params[yname], "log", False):
        ax.set_yscale("log")
    for i, space in enumerate(spaces):
        dx = space.get(xname)
        if dx is None:
            continue
        if yname and space.get(yname) is not None:
            dy = space[yname]
            rect = Rectangle(
                (dx.low, dy.low),
                dx.high - dx.low,
                dy.high - dy.low,
                fill=False,
                edgecolor=f"C{i % 10}",
                linewidth=1.5,
                label=f"stage {i + 1} ranges",
            )
            ax.add_patch(rect)
        else:
            ax.hlines(i + 1, dx.low, dx.high, colors=f"C{i % 10}", linewidth=3, label=f"stage {i + 1} range")
    ax.set_xlabel(xname)
    ax.set_ylabel(yname or "stage")
    ax.legend(fontsize=8, loc="best")
    ax.set_title("sampled points per stage, coloured by score; boxes: each stage's ranges", fontsize=10)
