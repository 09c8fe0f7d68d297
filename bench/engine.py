"""Speed benchmark of the NumPy engine, optionally against PyTorch on the CPU.

Run as ``python bench/engine.py [--json PATH] [--trials N] [--no-torch] [--coretype CHOICE]``.
It measures:

* the *book protocol trial* (Deep Learning from Scratch, section 6.5): 400 MNIST training rows and
  100 validation rows, a 784-[100]x6-10 ReLU network with He initialization and weight decay, SGD
  with lr 0.01, 50 epochs of batch 100, train and validation accuracy after every epoch. Only
  ``Trainer.fit()`` is timed (loading the data and building the network are not);
* training steps per second (one forward and backward pass plus one SGD update) of a
  784-[100]x6-10 network at batch 100 and a 784-[512]x3-10 network at batch 1000;
* the same three things in PyTorch (one thread, float32), with the ratios.

Everything runs on one core with BLAS pinned to one thread, as the search's worker processes do:
the script re-executes itself with :func:`hpo._blas.blas_environ` applied, since BLAS settings
only take effect in a process that loads NumPy after they are set. The OpenBLAS core type follows
``--coretype`` (default: the ``HPO_BLAS_CORETYPE`` setting, else ``auto``), as in the workers:
``auto`` picks the best kernel the CPU advertises even over an inherited ``OPENBLAS_CORETYPE``,
``inherit`` keeps the environment's value, anything else is an OpenBLAS core name.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from engine import Dataset

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MNIST = REPO_ROOT.parent / "shared/data/mnist"
CHILD_VAR = "HPO_BENCH_CHILD"
# The parent's OPENBLAS_CORETYPE, for the child to report ("" when it was unset).
INHERITED_VAR = "HPO_BENCH_INHERITED_CORETYPE"

# The book's protocol (section 6.5).
SUBSET, VAL_FRACTION, TEST_FRACTION, DATA_SEED = 500, 0.2, 0.2, 0
INPUT_SIZE, NUM_CLASSES = 784, 10
BOOK_HIDDEN = (100,) * 6
EPOCHS, BATCH_SIZE, LR = 50, 100, 0.01
WEIGHT_DECAY = 1e-6  # inside the book's search range, 1e-8 .. 1e-4
WARMUP_TRIALS = 2


@dataclass(frozen=True, slots=True)
class StepCase:
    """One steps-per-second benchmark: a network shape and a batch size."""

    key: str
    hidden: tuple[int, ...]
    batch: int

    @property
    def label(self) -> str:
        """Human-readable description, e.g. ``784-[100]x6-10, batch 100``."""
        return f"{INPUT_SIZE}-[{self.hidden[0]}]x{len(self.hidden)}-{NUM_CLASSES}, batch {self.batch}"


STEP_CASES = (StepCase("100x6_b100", (100,) * 6, 100), StepCase("512x3_b1000", (512,) * 3, 1000))


@dataclass(slots=True)
class TrialStats:
    """Wall-clock seconds and final validation accuracies of repeated book protocol trials."""

    seconds: list[float] = field(default_factory=list)
    final_val_acc: list[float] = field(default_factory=list)

    def summary(self, prefix: str) -> dict[str, float]:
        """Median, min and 90th percentile seconds and the median final accuracy, keyed for JSON."""
        return {
            f"{prefix}book_trial_seconds_median": statistics.median(self.seconds),
            f"{prefix}book_trial_seconds_min": min(self.seconds),
            f"{prefix}book_trial_seconds_p90": _percentile(self.seconds, 90),
            f"{prefix}book_trial_final_val_acc_median": statistics.median(self.final_val_acc),
        }


# --------------------------------------------------------------------------------------------
# Process setup
# --------------------------------------------------------------------------------------------


def _reexec_with_blas_environ(argv: Sequence[str] | None, coretype: str, script: Path | None = None) -> None:
    """Replace this process with one whose environment pins BLAS to one thread (never returns).

    The new process runs ``script`` (default: this file) with the same arguments.

    The child gets ``HPO_BLAS_CORETYPE=coretype`` (so :func:`hpo._blas.blas_environ` sets its
    ``OPENBLAS_CORETYPE`` as the search's workers would) and this process's ``OPENBLAS_CORETYPE``
    in ``HPO_BENCH_INHERITED_CORETYPE``. Does nothing in the re-executed child
    (``HPO_BENCH_CHILD=1``).
    """
    if os.environ.get(CHILD_VAR) == "1":
        return
    if "numpy" in sys.modules:
        raise SystemExit("numpy was imported before the benchmark could set up BLAS")
    from hpo._blas import blas_environ  # stdlib only: NumPy stays unloaded

    parent = dict(os.environ, HPO_BLAS_CORETYPE=coretype)
    env = blas_environ(threads=1, environ=parent)
    env[CHILD_VAR] = "1"
    env[INHERITED_VAR] = os.environ.get("OPENBLAS_CORETYPE", "")
    path = str((script or Path(__file__)).resolve())
    args = sys.argv[1:] if argv is None else list(argv)
    os.execve(sys.executable, [sys.executable, path, *args], env)


def _use_repo_engine() -> None:
    """Make ``import engine`` find the repository's package, not this script (``bench/engine.py``).

    Run as a script, this file's directory is ``sys.path[0]``, and the script is named ``engine``.
    """
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON here")
    parser.add_argument("--trials", type=int, default=21, help="timed book protocol trials (default 21)")
    parser.add_argument(
        "--torch-trials", type=int, default=7, help="timed book protocol trials in PyTorch (default 7)"
    )
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    parser.add_argument(
        "--coretype",
        default=os.environ.get("HPO_BLAS_CORETYPE", "auto"),
        metavar="CHOICE",
        help="HPO_BLAS_CORETYPE for the benchmark process: auto (SkylakeX on AVX-512 CPUs, even over "
        "an inherited OPENBLAS_CORETYPE), inherit (keep the environment's OPENBLAS_CORETYPE) or an "
        "OpenBLAS core name (default: $HPO_BLAS_CORETYPE, else auto)",
    )
    parser.add_argument("--mnist", type=Path, default=DEFAULT_MNIST, help="MNIST directory (IDX files)")
    parser.add_argument(
        "--step-seconds",
        type=float,
        default=2.0,
        help="measured seconds per steps/s benchmark, over all repeats (default 2)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="repeats per steps/s benchmark (default 5)")
    args = parser.parse_args(argv)
    for name in ("trials", "torch_trials", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if not args.step_seconds > 0:
        parser.error("--step-seconds must be > 0")
    if not args.coretype.strip():
        parser.error("--coretype must not be empty")
    return args


# --------------------------------------------------------------------------------------------
# Reporting helpers
# --------------------------------------------------------------------------------------------


def _percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile with linear interpolation between closest ranks (NumPy's default)."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _write_json(path: Path | None, results: dict[str, Any]) -> None:
    """Write ``results`` to ``path`` as JSON, if a path was given, and say so."""
    if path is not None:
        path.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {path}")


def _cpu_model() -> str:
    """The ``model name`` line of /proc/cpuinfo (or the platform's processor string)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _blas_pools() -> list[dict[str, Any]]:
    """The BLAS thread pools loaded in this process, as reported by threadpoolctl.

    Raises:
        SystemExit: No BLAS is loaded, or one runs with more than one thread (the numbers would
            not describe the single-threaded worker processes).
    """
    from threadpoolctl import threadpool_info

    keys = ("internal_api", "prefix", "version", "num_threads", "architecture", "threading_layer", "filepath")
    pools = [{k: info.get(k) for k in keys} for info in threadpool_info() if info.get("user_api") == "blas"]
    if not pools:
        raise SystemExit("threadpoolctl finds no BLAS library loaded; refusing to report")
    wrong = [p for p in pools if p["num_threads"] != 1]
    if wrong:
        raise SystemExit(f"BLAS is not single-threaded ({wrong}); refusing to report")
    return pools


def _openmp_threads() -> dict[str, int]:
    """Thread counts of the OpenMP pools loaded (PyTorch brings one), by library file name."""
    from threadpoolctl import threadpool_info

    return {
        Path(info["filepath"]).name: int(info["num_threads"])
        for info in threadpool_info()
        if info.get("user_api") == "openmp"
    }


def _time_steps(step: Callable[[], object], seconds: float, repeats: int) -> float:
    """Median steps per second of ``step`` over ``repeats`` timed runs of ``seconds`` in all.

    A warm-up of at least 0.3 s (and 10 steps) comes first and sets the number of steps per run.
    """
    n = 0
    start = time.perf_counter()
    while n < 10 or time.perf_counter() - start < 0.3:
        step()
        n += 1
    rate = n / (time.perf_counter() - start)
    steps = max(3, round(rate * seconds / repeats))
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        rates.append(steps / (time.perf_counter() - t0))
    return statistics.median(rates)


# --------------------------------------------------------------------------------------------
# The NumPy engine
# --------------------------------------------------------------------------------------------


def load_book_data(mnist: Path) -> Dataset:
    """The book protocol's data: 500 non-test MNIST rows, split into 400 train and 100 validation."""
    import engine

    try:
        data = engine.load_dataset(
            "mnist",
            path=mnist,
            subset=SUBSET,
            val_fraction=VAL_FRACTION,
            test_fraction=TEST_FRACTION,
            seed=DATA_SEED,
        )
    except engine.DatasetError as exc:
        raise SystemExit(f"{exc} (pass --mnist DIR)") from None
    if (len(data.train.t), len(data.val.t)) != (400, 100):
        raise SystemExit(f"expected 400/100 rows, got {len(data.train.t)}/{len(data.val.t)}")
    return data


def hpo_book_trial(data: Dataset, seed: int) -> tuple[float, float]:
    """One book protocol trial with the engine: (seconds in ``Trainer.fit()``, final val accuracy)."""
    import engine

    net = engine.MultiLayerNet(
        INPUT_SIZE,
        list(BOOK_HIDDEN),
        NUM_CLASSES,
        activation="relu",
        weight_init="he",
        weight_decay=WEIGHT_DECAY,
        rng=seed,
    )
    trainer = engine.Trainer(
        net,
        engine.SGD(lr=LR),
        data.train.x,
        data.train.t,
        data.val.x,
        data.val.t,
        epochs=EPOCHS,
        batch_size=BATCH_SIZE,
        rng=seed,
    )
    gc.collect()
    start = time.perf_counter()
    result = trainer.fit()
    seconds = time.perf_counter() - start
    if result.outcome is not engine.Outcome.COMPLETED or result.final_val_acc is None:
        raise SystemExit(f"book trial with seed {seed} did not complete: {result.reason}")
    return seconds, result.final_val_acc


def hpo_steps_per_s(case: StepCase, seconds: float, repeats: int) -> float:
    """Training steps per second of the engine (``loss_and_grad`` + ``SGD.update``) on random data."""
    import numpy as np

    import engine

    rng = np.random.default_rng(0)
    x = rng.random((case.batch, INPUT_SIZE), dtype=np.float32)
    t = rng.integers(0, NUM_CLASSES, case.batch)
    net = engine.MultiLayerNet(
        INPUT_SIZE, list(case.hidden), NUM_CLASSES, weight_init="he", weight_decay=WEIGHT_DECAY, rng=0
    )
    opt, params = engine.SGD(lr=LR), net.flat_params

    def step() -> None:
        net.loss_and_grad(x, t)
        opt.update(params)

    with np.errstate(all="ignore"):
        return _time_steps(step, seconds, repeats)


# --------------------------------------------------------------------------------------------
# PyTorch
# --------------------------------------------------------------------------------------------


def _import_torch() -> ModuleType | None:
    """PyTorch set to one intra-op and one inter-op thread, or None if it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    # Only allowed before any inter-op parallel work; harmless to skip if that already ran.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)
    return torch


def _torch_model(hidden: Sequence[int], seed: int) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """The engine's network in PyTorch (He-normal weights, zero biases) and its SGD optimizer.

    Weight decay applies to the weight matrices only, as in the engine.
    """
    import torch
    from torch import nn

    torch.manual_seed(seed)
    sizes = [INPUT_SIZE, *hidden, NUM_CLASSES]
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        linear = nn.Linear(sizes[i], sizes[i + 1])
        nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
        nn.init.zeros_(linear.bias)
        layers.append(linear)
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    model = nn.Sequential(*layers)
    weights = [p for name, p in model.named_parameters() if name.endswith("weight")]
    biases = [p for name, p in model.named_parameters() if name.endswith("bias")]
    opt = torch.optim.SGD(
        [{"params": weights, "weight_decay": WEIGHT_DECAY}, {"params": biases, "weight_decay": 0.0}], lr=LR
    )
    return model, opt


def torch_book_trial(data: Dataset, seed: int) -> tuple[float, float]:
    """The book protocol trial in PyTorch: (training seconds, final validation accuracy).

    Shuffled mini-batches from a seeded generator, the mean training loss read every step (as the
    engine's trainer does, to detect divergence), and after every epoch the train and validation
    accuracy (and validation loss) under ``model.eval()`` and ``torch.no_grad()``.
    """
    import torch
    from torch import nn

    x_tr, t_tr = torch.from_numpy(data.train.x), torch.from_numpy(data.train.t)
    x_va, t_va = torch.from_numpy(data.val.x), torch.from_numpy(data.val.t)
    model, opt = _torch_model(BOOK_HIDDEN, seed)
    criterion = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)
    n = x_tr.shape[0]
    val_acc = float("nan")
    gc.collect()
    start = time.perf_counter()
    for epoch in range(1, EPOCHS + 1):
        model.train()
        order = torch.randperm(n, generator=gen)
        xs, ts = x_tr[order], t_tr[order]
        loss_sum = 0.0
        for lo in range(0, n, BATCH_SIZE):
            xb, tb = xs[lo : lo + BATCH_SIZE], ts[lo : lo + BATCH_SIZE]
            opt.zero_grad()
            loss = criterion(model(xb), tb)
            loss.backward()
            opt.step()
            value = loss.item()
            if not math.isfinite(value):
                raise SystemExit(f"torch book trial with seed {seed} diverged in epoch {epoch}")
            loss_sum += value * xb.shape[0]
        model.eval()
        with torch.no_grad():
            _train_acc = (model(x_tr).argmax(dim=1) == t_tr).float().mean().item()
            val_scores = model(x_va)
            _val_loss = criterion(val_scores, t_va).item()
            val_acc = (val_scores.argmax(dim=1) == t_va).float().mean().item()
    return time.perf_counter() - start, val_acc


def torch_steps_per_s(case: StepCase, seconds: float, repeats: int) -> float:
    """Training steps per second in PyTorch (zero_grad, forward, loss, backward, SGD step)."""
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(0)
    x = torch.rand((case.batch, INPUT_SIZE), generator=gen, dtype=torch.float32)
    t = torch.randint(0, NUM_CLASSES, (case.batch,), generator=gen)
    model, opt = _torch_model(case.hidden, 0)
    model.train()
    criterion = nn.CrossEntropyLoss()

    def step() -> None:
        opt.zero_grad()
        loss = criterion(model(x), t)
        loss.backward()
        opt.step()

    return _time_steps(step, seconds, repeats)


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def _run_trials(
    trial: Callable[[Dataset, int], tuple[float, float]], data: Dataset, count: int
) -> TrialStats:
    """``WARMUP_TRIALS`` untimed trials, then ``count`` timed ones with seeds 0 .. count-1."""
    for seed in range(WARMUP_TRIALS):
        trial(data, 10_000 + seed)
    stats = TrialStats()
    for seed in range(count):
        seconds, acc = trial(data, seed)
        stats.seconds.append(seconds)
        stats.final_val_acc.append(acc)
    return stats


def _print_table(results: dict[str, Any], torch_ran: bool) -> None:
    """Print the results as a table (hpo, torch and hpo's speed-up over torch)."""
    from rich.console import Console
    from rich.table import Table

    trials = results["trials"]
    blas = ", ".join(f"{p['prefix']} {p['version']} {p['architecture']}" for p in results["blas"])
    versus = f" vs PyTorch {results['torch']}" if torch_ran else ""
    table = Table(title=f"hpo engine{versus} (1 thread, float32) on {results['cpu']}")
    table.add_column("benchmark")
    table.add_column("hpo", justify="right")
    if torch_ran:
        table.add_column("torch", justify="right")
        table.add_column("hpo speed-up", justify="right")

    def row(label: str, key: str, fmt: str, speedup: str | None = None) -> None:
        cells = [label, format(results[key], fmt)]
        if torch_ran:
            cells.append(format(results[f"torch_{key}"], fmt))
            cells.append(f"{results[speedup]:.2f}x" if speedup else "")
        table.add_row(*cells)

    torch_note = f" / {results['torch_trials']}" if torch_ran else ""
    row(
        f"book trial s, median ({trials}{torch_note} trials)",
        "book_trial_seconds_median",
        ".3f",
        "ratio_book_trial_seconds",
    )
    row("book trial s, min", "book_trial_seconds_min", ".3f", "ratio_book_trial_seconds_min")
    row("book trial s, p90", "book_trial_seconds_p90", ".3f")
    row("book trial final val acc, median", "book_trial_final_val_acc_median", ".2f")
    for case in STEP_CASES:
        row(f"steps/s {case.label}", f"steps_per_s_{case.key}", ".1f", f"ratio_steps_{case.key}")
    Console().print(table)
    inherited = results["openblas_coretype_inherited"] or "(unset)"
    print(
        f"numpy BLAS: {blas}, 1 thread "
        f"(HPO_BLAS_CORETYPE={results['hpo_blas_coretype']}, inherited OPENBLAS_CORETYPE={inherited})"
    )
    if torch_ran:
        print("speed-up = hpo/torch for steps/s, torch/hpo for seconds (> 1: hpo is faster)")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (re-executing first with single-threaded BLAS) and report it."""
    args = _parse_args(argv)
    _use_repo_engine()
    _reexec_with_blas_environ(argv, args.coretype)

    import numpy as np

    pools = _blas_pools()
    for pool in pools:
        print(
            f"BLAS: {pool['prefix']} {pool['version']} (internal_api={pool['internal_api']}, "
            f"num_threads={pool['num_threads']}, architecture={pool['architecture']})"
        )
    inherited = os.environ.get(INHERITED_VAR) or None
    choice = os.environ.get("HPO_BLAS_CORETYPE")
    applied = os.environ.get("OPENBLAS_CORETYPE")
    architectures = ", ".join(str(p["architecture"]) for p in pools)
    print(
        f"OPENBLAS_CORETYPE: inherited {inherited or '(unset)'}, HPO_BLAS_CORETYPE={choice} -> "
        f"{applied or '(unset)'}; OpenBLAS runs {architectures}; CPU: {_cpu_model()}"
    )

    data = load_book_data(args.mnist)
    results: dict[str, Any] = {
        "timestamp_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": pools,
        "openblas_coretype_inherited": inherited,
        "hpo_blas_coretype": choice,
        "trials": args.trials,
        "warmup_trials": WARMUP_TRIALS,
        "weight_decay": WEIGHT_DECAY,
        "step_seconds": args.step_seconds,
        "step_repeats": args.repeats,
    }

    started = time.perf_counter()
    print(f"book protocol trials (numpy): {WARMUP_TRIALS} warm-up + {args.trials} ...", flush=True)
    results.update(_run_trials(hpo_book_trial, data, args.trials).summary(""))
    for case in STEP_CASES:
        print(f"steps/s (numpy) {case.label} ...", flush=True)
        results[f"steps_per_s_{case.key}"] = hpo_steps_per_s(case, args.step_seconds, args.repeats)

    torch = None if args.no_torch else _import_torch()
    if torch is None:
        results["torch"] = None if args.no_torch else "not installed"
    else:
        results["torch"] = torch.__version__
        results["torch_threads"] = torch.get_num_threads()
        results["torch_interop_threads"] = torch.get_num_interop_threads()
        results["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        results["torch_trials"] = args.torch_trials
        results["openmp_threads"] = _openmp_threads()
        results["blas"] = _blas_pools()  # still single-threaded with torch loaded
        if results["torch_threads"] != 1:
            raise SystemExit(f"torch runs {results['torch_threads']} threads; refusing to report")
        print(f"book protocol trials (torch): {WARMUP_TRIALS} warm-up + {args.torch_trials} ...", flush=True)
        results.update(_run_trials(torch_book_trial, data, args.torch_trials).summary("torch_"))
        for case in STEP_CASES:
            print(f"steps/s (torch) {case.label} ...", flush=True)
            rate = torch_steps_per_s(case, args.step_seconds, args.repeats)
            results[f"torch_steps_per_s_{case.key}"] = rate
            results[f"ratio_steps_{case.key}"] = results[f"steps_per_s_{case.key}"] / rate
        for stat in ("median", "min"):
            suffix = "" if stat == "median" else f"_{stat}"
            results[f"ratio_book_trial_seconds{suffix}"] = (
                results[f"torch_book_trial_seconds_{stat}"] / results[f"book_trial_seconds_{stat}"]
            )
    results["total_seconds"] = time.perf_counter() - started

    print()
    _print_table(results, torch is not None)
    _write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
