"""Cost of the engine's checkpoints, against an epoch and a book protocol trial.

Run as ``python bench/checkpoint.py [--json PATH] [--repeats N] [--trials N] [--coretype CHOICE]
[--mnist DIR]``. For each network and optimizer it measures, at a real epoch boundary (inside the
epoch callback, with the next epoch's order drawn):

* *write*: ``Trainer.checkpoint()`` (copies of the arrays and the position) and
  ``Checkpoint.to_bytes()``;
* *read*: ``Checkpoint.from_bytes()`` and ``Trainer.resume()`` into a new trainer (the network and
  optimizer restored in place);
* the size of the bytes, and the time of one epoch of that training setup (median of the epoch
  records of a run without checkpoints, its first epoch left out).

The networks are the book's (784-[100]x6-10 on the book protocol's 400 training and 100
validation rows, batch 100) and 784-[512]x3-10 at batch 1000 on all the MNIST images the data
directory holds (test 20 %, validation 20 % of the rest), each with SGD (no optimizer state) and
Adam (two arrays per parameter). Costs are given as a fraction of that epoch and of one book
protocol trial (``bench/engine.py``'s, timed here as well), and the book trial is also timed with
a checkpoint written after every epoch. Every resumed run is checked to finish with the
uninterrupted run's weights. Single-threaded BLAS, as in ``bench/engine.py``.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine import Dataset, Trainer


def _bench_engine() -> ModuleType:
    """``bench/engine.py`` as a module (its name would shadow the engine package on import)."""
    path = Path(__file__).resolve().with_name("engine.py")
    spec = importlib.util.spec_from_file_location("bench_engine", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


B = _bench_engine()


@dataclass(frozen=True, slots=True)
class Case:
    """One training setup whose checkpoints are measured."""

    key: str
    hidden: tuple[int, ...]
    batch: int
    optimizer: str
    lr: float
    book_data: bool  # the book protocol's 400/100 rows, else all the MNIST rows available

    @property
    def label(self) -> str:
        """Human-readable description, e.g. ``784-[100]x6-10 sgd, batch 100``."""
        shape = f"{B.INPUT_SIZE}-[{self.hidden[0]}]x{len(self.hidden)}-{B.NUM_CLASSES}"
        return f"{shape} {self.optimizer}, batch {self.batch}"


CASES = (
    Case("book_sgd", B.BOOK_HIDDEN, B.BATCH_SIZE, "sgd", B.LR, True),
    Case("book_adam", B.BOOK_HIDDEN, B.BATCH_SIZE, "adam", 0.001, True),
    Case("512x3_sgd", (512,) * 3, 1000, "sgd", 0.1, False),
    Case("512x3_adam", (512,) * 3, 1000, "adam", 0.001, False),
)
MEASURED_EPOCH = 2  # checkpoints are taken at the boundary after this epoch
EPOCHS = 5  # of the runs without checkpoints that time an epoch


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON here")
    parser.add_argument(
        "--repeats", type=int, default=21, help="timed writes and reads per case (default 21)"
    )
    parser.add_argument(
        "--trials", type=int, default=11, help="book trials timed with and without checkpoints (default 11)"
    )
    parser.add_argument(
        "--coretype",
        default=os.environ.get("HPO_BLAS_CORETYPE", "auto"),
        metavar="CHOICE",
        help="HPO_BLAS_CORETYPE for the benchmark process, as in bench/engine.py (default: "
        "$HPO_BLAS_CORETYPE, else auto)",
    )
    parser.add_argument("--mnist", type=Path, default=B.DEFAULT_MNIST, help="MNIST directory (IDX files)")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.trials < 1:
        parser.error("--repeats and --trials must be >= 1")
    return args


def _all_mnist(mnist: Path) -> Dataset:
    """Every MNIST row of the directory: 20 % held out for test, 20 % of the rest for validation."""
    import engine

    try:
        return engine.load_dataset("mnist", path=mnist, val_fraction=0.2, test_fraction=0.2, seed=B.DATA_SEED)
    except engine.DatasetError as exc:
        raise SystemExit(f"{exc} (pass --mnist DIR)") from None


def _trainer(case: Case, data: Dataset, seed: int, epochs: int, **kwargs: Any) -> Trainer:
    import engine

    net = engine.MultiLayerNet(
        B.INPUT_SIZE,
        list(case.hidden),
        B.NUM_CLASSES,
        weight_init="he",
        weight_decay=B.WEIGHT_DECAY,
        rng=seed,
    )
    return engine.Trainer(
        net,
        engine.make_optimizer(case.optimizer, case.lr),
        data.train.x,
        data.train.t,
        data.val.x,
        data.val.t,
        epochs=epochs,
        batch_size=case.batch,
        rng=seed,
        **kwargs,
    )


def _ms(values: list[float]) -> float:
    return 1000 * statistics.median(values)


def measure_case(case: Case, data: Dataset, repeats: int) -> dict[str, Any]:
    """Write and read times (ms, medians), size (bytes) and epoch time (ms) of one case."""
    from engine import Checkpoint

    plain = _trainer(case, data, seed=0, epochs=EPOCHS)
    epoch_ms = _ms([r.seconds for r in plain.fit().history[1:]])

    snapshot_s: list[float] = []
    to_bytes_s: list[float] = []
    saved: list[bytes] = []

    def at_boundary(record: Any) -> None:
        if record.epoch != MEASURED_EPOCH:
            return
        for _ in range(repeats):
            gc.collect()
            t0 = time.perf_counter()
            checkpoint = measured.checkpoint()
            t1 = time.perf_counter()
            data_bytes = checkpoint.to_bytes()
            t2 = time.perf_counter()
            snapshot_s.append(t1 - t0)
            to_bytes_s.append(t2 - t1)
        saved.append(data_bytes)

    measured = _trainer(case, data, seed=0, epochs=MEASURED_EPOCH + 1, callback=at_boundary)
    measured.fit()

    from_bytes_s: list[float] = []
    resume_s: list[float] = []
    for _ in range(repeats):
        fresh = _trainer(case, data, seed=1, epochs=MEASURED_EPOCH + 1)
        gc.collect()
        t0 = time.perf_counter()
        checkpoint = Checkpoint.from_bytes(saved[0])
        t1 = time.perf_counter()
        fresh.resume(checkpoint)
        t2 = time.perf_counter()
        from_bytes_s.append(t1 - t0)
        resume_s.append(t2 - t1)
    fresh.fit()
    for a, b in zip(measured.net.params, fresh.net.params, strict=True):
        if not (a.data == b.data).all():
            raise SystemExit(
                f"{case.label}: the resumed run did not end with the uninterrupted run's weights"
            )

    write_ms, read_ms = _ms(snapshot_s) + _ms(to_bytes_s), _ms(from_bytes_s) + _ms(resume_s)
    return {
        "label": case.label,
        "params": measured.net.num_params,
        "bytes": len(saved[0]),
        "checkpoint_ms": _ms(snapshot_s),
        "to_bytes_ms": _ms(to_bytes_s),
        "write_ms": write_ms,
        "from_bytes_ms": _ms(from_bytes_s),
        "resume_ms": _ms(resume_s),
        "read_ms": read_ms,
        "epoch_ms": epoch_ms,
        "write_per_epoch": write_ms / epoch_ms,
        "read_per_epoch": read_ms / epoch_ms,
    }


def book_trials(data: Dataset, trials: int) -> dict[str, float]:
    """Median seconds of the book trial without checkpoints and with one written every epoch.

    The two kinds alternate, after a warm-up of each, so that both see the same machine.
    """
    case = CASES[0]
    plain: list[float] = []
    saving: list[float] = []
    sizes: list[int] = []

    def run(seed: int, save: bool) -> float:
        trainer: Trainer | None = None

        def write(_record: Any) -> None:
            assert trainer is not None
            sizes.append(len(trainer.checkpoint().to_bytes()))

        trainer = _trainer(case, data, seed, B.EPOCHS, callback=write if save else None)
        gc.collect()
        start = time.perf_counter()
        trainer.fit()
        return time.perf_counter() - start

    run(10_000, False)
    run(10_001, True)
    for seed in range(trials):
        plain.append(run(seed, False))
        saving.append(run(seed, True))
    return {
        "book_trial_seconds_median": statistics.median(plain),
        "book_trial_with_checkpoints_seconds_median": statistics.median(saving),
        "book_trial_checkpoint_overhead": statistics.median(saving) / statistics.median(plain) - 1,
    }


def _print_table(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    trial_ms = 1000 * results["book_trial_seconds_median"]
    title = f"engine checkpoints (1 thread, float32, after epoch {MEASURED_EPOCH}) on {results['cpu']}"
    table = Table(title=title)
    for column in (
        "case",
        "KiB",
        "checkpoint() ms",
        "to_bytes ms",
        "from_bytes ms",
        "resume ms",
        "epoch ms",
        "write/epoch",
        "read/epoch",
        "write/trial",
        "read/trial",
    ):
        table.add_column(column, justify="left" if column == "case" else "right")
    for case in CASES:
        r = results["cases"][case.key]
        table.add_row(
            r["label"],
            f"{r['bytes'] / 1024:.0f}",
            f"{r['checkpoint_ms']:.2f}",
            f"{r['to_bytes_ms']:.2f}",
            f"{r['from_bytes_ms']:.2f}",
            f"{r['resume_ms']:.2f}",
            f"{r['epoch_ms']:.1f}",
            f"{r['write_per_epoch']:.1%}",
            f"{r['read_per_epoch']:.1%}",
            f"{r['write_ms'] / trial_ms:.2%}",
            f"{r['read_ms'] / trial_ms:.2%}",
        )
    Console(width=180).print(table)
    print(
        f"book trial: {results['book_trial_seconds_median']:.3f} s without checkpoints, "
        f"{results['book_trial_with_checkpoints_seconds_median']:.3f} s with one written after every epoch "
        f"({results['book_trial_checkpoint_overhead']:+.1%}; medians of {results['trials']})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (re-executing first with single-threaded BLAS) and report it."""
    args = _parse_args(argv)
    B._use_repo_engine()
    B._reexec_with_blas_environ(argv, args.coretype, script=Path(__file__))

    import numpy as np

    pools = B._blas_pools()
    book, everything = B.load_book_data(args.mnist), _all_mnist(args.mnist)
    blas = ", ".join(f"{p['prefix']} {p['version']} {p['architecture']}" for p in pools)
    print(
        f"BLAS: {blas}; MNIST rows (train/val): book {len(book.train.t)}/{len(book.val.t)}, "
        f"all {len(everything.train.t)}/{len(everything.val.t)}"
    )
    results: dict[str, Any] = {
        "timestamp_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": B._cpu_model(),
        "numpy": np.__version__,
        "blas": pools,
        "repeats": args.repeats,
        "trials": args.trials,
        "cases": {},
    }
    for case in CASES:
        print(f"{case.label} ...", flush=True)
        results["cases"][case.key] = measure_case(case, book if case.book_data else everything, args.repeats)
    print("book trials with and without checkpoints ...", flush=True)
    results.update(book_trials(book, args.trials))
    print()
    _print_table(results)
    B._write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
