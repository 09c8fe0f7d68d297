"""``hpo plot``: the figure's structure, read from matplotlib's objects (not pixels), and the
command's handling of its output path.

Three small studies really run (SQLite, local worker processes, the real CLI): five parameters of
every kind over two narrowing stages; a ``val_loss`` study of one parameter with the random
sampler; and one whose trials fail (an lr that overflows float32) or are pruned (one worker, so
the pruner sees the same trials each run).
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from hpo import SpecError
from hpo._output import atomic_output, output_format
from hpo._plots import draw, read_plot_data
from hpo.orchestration import submit_study
from hpo.spec import load_study_spec
from hpo.storage import Storage
from tests.cli import run_hpo

DATA = "dataset: {kind: digits, subset: 300, val_fraction: 0.25}\n"
MIXED = (
    "name: mixed\nseed: 1\n" + DATA + "model: {hidden_sizes: [16], activation: relu}\n"
    "training: {optimizer: sgd, epochs: 3, batch_size: 50}\n"
    """search:
  sampler: narrowing
  stages: [{trials: 8, epochs: 2}, {trials: 4}]
  parameters:
    lr: {type: float, low: 1.0e-3, high: 1.0, log: true}
    model.width: {type: int, low: 4, high: 64, log: true}
    model.depth: {type: int, low: 1, high: 3}
    model.dropout: {type: float, low: 0.0, high: 0.5}
    training.optimizer: {type: categorical, choices: [sgd, momentum, adam]}
"""
)
LOSS = (
    "name: loss\nseed: 2\n" + DATA + "model: {hidden_sizes: [16], activation: relu}\n"
    "training: {optimizer: sgd, epochs: 3, batch_size: 50}\n"
    """search:
  sampler: random
  stages: [{trials: 4}]
  parameters:
    lr: {type: float, low: 1.0e-3, high: 1.0, log: true}
objective: {metric: val_loss}
"""
)
FAILING = (
    "name: failing\nseed: 4\n" + DATA + "model: {hidden_sizes: [16], activation: relu}\n"
    "training: {optimizer: sgd, epochs: 5, batch_size: 50}\n"
    """search:
  sampler: random
  stages: [{trials: 12}]
  parameters:
    lr: {type: categorical, choices: [0.001, 0.3, 1.0e+30]}
    weight_decay: {type: float, low: 1.0e-8, high: 1.0e-2, log: true}
pruner: {kind: median, warmup_epochs: 1}
limits: {max_failed_trials: 12}
"""
)


@dataclass(frozen=True)
class Studies:
    db: str
    dir: Path


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> Studies:
    tmp = tmp_path_factory.mktemp("plot")
    db = f"sqlite:///{tmp / 'hpo.db'}"
    for name, text, workers in (("mixed", MIXED, "2"), ("loss", LOSS, "2"), ("failing", FAILING, "1")):
        path = tmp / f"{name}.yaml"
        path.write_text(text)
        proc = run_hpo("submit", str(path), "--db", db, "-w", workers, "--no-progress")
        assert proc.returncode == 0, proc.stderr
    return Studies(db, tmp)


def _figure(studies: Studies, name: str, top: int = 20, search: bool = True) -> Figure:
    return draw(read_plot_data(Storage(studies.db), name, top), search=search)


def _axes(fig: Figure, role: str) -> dict[str, Axes]:
    """The figure's axes of one role (``curve``, ``search``, ``ranges``), by the rest of their label."""
    found = {}
    for ax in _all_axes(fig):
        kind, _, key = ax.get_label().partition(":")
        if kind == role:
            found[key] = ax
    return found


def _all_axes(fig: Figure) -> Iterator[Axes]:
    yield from fig.axes
    for sub in fig.subfigs:
        yield from _all_axes(sub)  # type: ignore[arg-type]


def _params(studies: Studies, name: str) -> list[str]:
    """The study's parameters, in its file's order."""
    return list(load_study_spec(studies.dir / f"{name}.yaml").search.parameters)


def _within(value: float, limits: tuple[float, float]) -> bool:
    lo, hi = sorted(limits)
    return lo <= value <= hi


# --- the figure ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mixed", "loss", "failing"])
def test_every_parameter_has_a_panel_and_every_panel_its_axis_labels(studies: Studies, name: str) -> None:
    fig = _figure(studies, name)
    search, ranges = _axes(fig, "search"), _axes(fig, "ranges")
    assert list(search) == _params(studies, name)  # all of them, in the study file's order
    assert set(ranges) == set(search)
    curves = _axes(fig, "curve")
    assert curves and set(curves) == {str(i) for i in range(1, len(curves) + 1)}
    for ax in [*curves.values(), *search.values()]:
        assert ax.get_xlabel() and ax.get_ylabel(), ax.get_label()
        assert ax.get_title() or ax in search.values()
    metric = "val_loss" if name == "loss" else "val_acc"
    assert all(ax.get_ylabel() == metric for ax in search.values())
    assert all(ax.get_xlabel().startswith(p) for p, ax in search.items())


@pytest.mark.parametrize(
    ("name", "quantity"), [("mixed", "accuracy"), ("loss", "loss")], ids=["val_acc", "val_loss"]
)
def test_curve_panels_draw_the_objective_metric_and_name_the_trial(
    studies: Studies, name: str, quantity: str
) -> None:
    data = read_plot_data(Storage(studies.db), name, 4)
    metric = data.spec.objective.metric
    curves = _axes(draw(data), "curve")
    assert len(curves) == 4
    for rank, trial in enumerate(data.best, start=1):
        ax = curves[str(rank)]
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("epoch", quantity)
        assert (
            ax.get_title()
            == f"#{rank} trial {trial.number}, stage {trial.stage + 1}: {metric} {trial.value:.4g}"
        )
        val, train = ax.get_lines()
        assert (val.get_linestyle(), train.get_linestyle()) == ("-", "--")
        assert list(val.get_ydata()) == [r[metric] for r in trial.curves or []]
        assert list(train.get_ydata()) == [r[metric.replace("val", "train")] for r in trial.curves or []]
        bottom, top = ax.get_ylim()
        if quantity == "accuracy":
            assert bottom <= 0 and top > 1.0  # 1.0 shows above the top spine
        else:
            assert bottom <= 0 and top >= max(val.get_ydata().max(), train.get_ydata().max())
        box = ax.get_legend()  # the trial's parameters
        assert [t.get_text().split(" = ")[0] for t in box.get_texts()] == list(trial.params)
    values = [t.value for t in data.best]
    assert values == sorted(values, reverse=quantity == "accuracy")  # best first


@pytest.mark.parametrize("name", ["mixed", "loss", "failing"])
def test_stage_ranges_and_points_lie_inside_their_axes(studies: Studies, name: str) -> None:
    fig = _figure(studies, name)
    n_stages = len(Storage(studies.db).stages(Storage(studies.db).get_study(name).id))
    for param, ax in _axes(fig, "ranges").items():
        bars = ax.patches
        assert bars, param
        for bar in bars:
            x0, x1 = bar.get_x(), bar.get_x() + bar.get_width()
            y0, y1 = bar.get_y(), bar.get_y() + bar.get_height()
            assert all(_within(x, ax.get_xlim()) for x in (x0, x1)), (param, x0, x1, ax.get_xlim())
            assert all(_within(y, ax.get_ylim()) for y in (y0, y1)), (param, y0, y1, ax.get_ylim())
        assert [t.get_text() for t in ax.get_yticklabels()] == [f"stage {i + 1}" for i in range(n_stages)]
    for param, ax in _axes(fig, "search").items():
        for points in ax.collections:
            for x, y in points.get_offsets():
                assert _within(x, ax.get_xlim()), (param, points.get_label(), x, ax.get_xlim())
                if points.get_label().endswith("failed"):
                    assert 0 < y < 0.1  # in axes fractions: the band at the bottom
                else:
                    assert _within(y, ax.get_ylim()), (param, points.get_label(), y, ax.get_ylim())


def test_each_stage_range_is_drawn_and_narrows(studies: Studies) -> None:
    import json

    storage = Storage(studies.db)
    spaces = [json.loads(s.space) for s in storage.stages(storage.get_study("mixed").id)]
    assert len(spaces) == 2
    ranges = _axes(_figure(studies, "mixed"), "ranges")
    lr = sorted(ranges["lr"].patches, key=lambda bar: bar.get_y())  # stage 1 on top
    first, second = ((bar.get_x(), bar.get_x() + bar.get_width()) for bar in lr)
    assert first == pytest.approx((1e-3, 1.0))
    # Narrower in decades (the rule's u-space), wherever the window panned to.
    assert second != first and math.log10(second[1] / second[0]) < math.log10(first[1] / first[0])
    kept = next(p for p in spaces[1]["params"] if p["name"] == "training.optimizer")
    optimizer_bars = [b for b in ranges["training.optimizer"].patches if b.get_y() > 0.5]
    assert len(optimizer_bars) == len(kept["distribution"]["attributes"]["choices"])


def test_int_axes_use_integer_ticks_and_log_parameters_log_axes(studies: Studies) -> None:
    search = _axes(_figure(studies, "mixed"), "search")
    for name in ("model.width", "model.depth"):
        ax = search[name]
        ticks = [t for t in ax.get_xticks() if _within(t, ax.get_xlim())]
        assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks), (name, ticks)
    assert search["model.width"].get_xscale() == "log" and search["lr"].get_xscale() == "log"
    assert search["model.depth"].get_xscale() == "linear"
    assert search["model.dropout"].get_xscale() == "linear"


def test_categorical_panels_have_one_column_per_choice_jittered_the_same_each_time(studies: Studies) -> None:
    first = _axes(_figure(studies, "mixed"), "search")["training.optimizer"]
    assert list(first.get_xticks()) == [0, 1, 2]
    assert [t.get_text() for t in first.get_xticklabels()] == ["sgd", "momentum", "adam"]
    assert first.get_xlim() == (-0.5, 2.5)
    again = _axes(_figure(studies, "mixed"), "search")["training.optimizer"]
    offsets = [c.get_offsets().tolist() for c in first.collections]
    assert offsets == [c.get_offsets().tolist() for c in again.collections]
    xs = [x for c in first.collections for x, _ in c.get_offsets()]
    assert any(not float(x).is_integer() for x in xs)  # spread sideways, not stacked
    assert all(abs(x - round(x)) < 0.3 for x in xs)  # within its choice's column


def test_failed_and_pruned_trials_are_marked_and_named_in_the_legend(studies: Studies) -> None:
    storage = Storage(studies.db)
    counts = storage.counts(storage.get_study("failing").id)
    assert counts["FAIL"] >= 1 and counts["PRUNED"] >= 1  # the study does what it is for
    fig = _figure(studies, "failing")
    for ax in _axes(fig, "search").values():
        marked = {c.get_label(): len(c.get_offsets()) for c in ax.collections}
        assert marked["stage 1 failed"] == counts["FAIL"]
        assert marked["stage 1 pruned"] == counts["PRUNED"]
        assert marked["stage 1"] == counts["COMPLETE"]
        assert marked["best"] == 1
    texts = [t.get_text() for sub in fig.subfigs for legend in sub.legends for t in legend.get_texts()]
    assert any(t.startswith("failed") for t in texts) and any(t.startswith("pruned") for t in texts)
    assert "stage 1: 12 trials, 5 epochs" in texts


def test_one_parameter_one_stage_and_few_best_trials(studies: Studies) -> None:
    fig = _figure(studies, "loss", top=1)
    assert len(_axes(fig, "curve")) == 1
    (ranges,) = _axes(fig, "ranges").values()
    assert len(ranges.patches) == 1
    curves_only = _figure(studies, "loss", search=False)
    assert not _axes(curves_only, "search") and len(_axes(curves_only, "curve")) == 4


# --- the command -----------------------------------------------------------------------------


def _one_line_error(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert all(n in lines[0] for n in needles), lines[0]


@pytest.mark.parametrize(
    ("output", "study", "problem"),
    [
        ("missing/x.png", "mixed", "directory missing does not exist"),
        ("file.txt/x.png", "mixed", "file.txt is not a directory"),
        # sysfs refuses new files even to root; and the output is checked before the study is
        # looked up (it does not exist).
        ("/sys/x.png", "no-such-study", "cannot write in /sys"),
    ],
)
def test_a_bad_output_is_one_line_exit_2_and_nothing_is_written(
    studies: Studies, tmp_path: Path, output: str, study: str, problem: str
) -> None:
    (tmp_path / "file.txt").write_text("not a directory")
    before = sorted(tmp_path.rglob("*"))
    proc = run_hpo("plot", study, "-o", output, "--db", studies.db, cwd=tmp_path)
    _one_line_error(proc, 2, f"--output: {problem}")
    assert sorted(tmp_path.rglob("*")) == before


def test_an_output_that_is_a_directory_or_an_unknown_format_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"^--output: .* is a directory$"), atomic_output(tmp_path):
        pass
    with pytest.raises(SpecError, match=r"^--output: cannot draw a '\.xyz' file: use \.png, \.svg or \.pdf$"):
        output_format(tmp_path / "x.xyz")
    assert [output_format(Path(p)) for p in ("a.png", "a.SVG", "a.pdf", "a")] == ["png", "svg", "pdf", "png"]
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_study_is_one_line_exit_2_and_no_file(studies: Studies, tmp_path: Path) -> None:
    proc = run_hpo("plot", "nope", "-o", str(tmp_path / "x.png"), "--db", studies.db)
    _one_line_error(proc, 2, "no study named 'nope'")
    assert list(tmp_path.iterdir()) == []


def test_a_study_without_completed_trials_is_one_line_and_no_file(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'hpo.db'}"
    (tmp_path / "s.yaml").write_text(LOSS)
    storage = Storage(db)
    storage.upgrade()
    submit_study(storage, load_study_spec(tmp_path / "s.yaml"))  # queued, never run
    out = tmp_path / "out"
    out.mkdir()
    proc = run_hpo("plot", "loss", "-o", str(out / "x.png"), "--db", db)
    _one_line_error(proc, 1, "study 'loss' has no completed trial to plot yet (4 pending)")
    assert list(out.iterdir()) == []


def test_plot_writes_a_png_by_default_and_svg_by_extension(studies: Studies, tmp_path: Path) -> None:
    png = tmp_path / "curves.png"
    png.write_bytes(b"an older figure")
    proc = run_hpo("plot", "mixed", "-k", "4", "-o", str(png), "--db", studies.db)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == f"wrote {png}"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(png) as image:
        assert image.format == "PNG"
        image.verify()  # a whole, valid file
    svg = tmp_path / "curves.svg"
    assert (
        run_hpo("plot", "mixed", "-k", "1", "--no-search", "-o", str(svg), "--db", studies.db).returncode == 0
    )
    assert b"<svg" in svg.read_bytes()[:400]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png", "curves.svg"]  # no temp left


def test_a_failed_drawing_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    out = tmp_path / "x.png"
    out.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_output(out) as file:
        file.write(b"half a figure")
        raise RuntimeError("the drawing failed")
    assert out.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]
    with atomic_output(out) as file:
        file.write(b"new")
    assert out.read_bytes() == b"new" and out.stat().st_mode & 0o777 != 0o600
    missing = tmp_path / "no" / "x.png"
    with pytest.raises(SpecError, match=r"^--output: directory .* does not exist$"), atomic_output(missing):
        pass
