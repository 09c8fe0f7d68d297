"""Reproduce "Deep Learning from Scratch" ch. 6.5: the book's random search, run through hpo.

Usage::

    python bench/reproduce_book.py [--seed 0] [--workers N] [--db URL] [--figure PATH] [--json PATH]

The book's protocol (``examples/mnist-book-random.yaml``): 100 random trials, lr = 10^U(-6, -2)
and weight decay = 10^U(-8, -4), 50 epochs of plain SGD on a 784-[100]x6-10 ReLU network, 500
MNIST images from ``../shared/data/mnist`` split 400 train / 100 validation. The study is run by
``hpo submit`` (local worker processes, a fresh SQLite file unless ``--db`` names one); then this
prints the book's "Best-1 ... Best-20" listing and draws its 20-panel figure of validation (solid)
and training (dashed) accuracy with ``hpo plot --no-search``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
# bench/queue.py would shadow the standard library's `queue` (multiprocessing imports it): take
# this script's directory off the path, and put the repository on it.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))
BOOK = ROOT / "examples" / "mnist-book-random.yaml"


def _hpo(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "hpo", *args], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"hpo {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def book_listing(rows: list[dict[str, Any]]) -> list[str]:
    """The book's lines: ``Best-1(val acc:0.83) | lr:0.0092, weight decay:3.86e-07``."""
    return [
        f"Best-{i + 1}(val acc:{r['value']:.2f}) | lr:{r['lr']:.3g}, weight decay:{r['weight_decay']:.3g}"
        for i, r in enumerate(rows)
    ]


def run(seed: int, workers: int | None, db: str | None, figure: Path, tmp: Path) -> dict[str, Any]:
    from hpo.orchestration import best_trials, study_spec
    from hpo.storage import Storage

    spec = yaml.safe_load(BOOK.read_text())
    spec["name"] = f"book-random-seed{seed}"
    spec["seed"] = seed
    # The copy is written elsewhere: its relative data path is the example file's.
    spec["dataset"]["path"] = str((BOOK.parent / spec["dataset"]["path"]).resolve())
    path = tmp / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    url = db or f"sqlite:///{tmp / 'book.db'}"
    args = ["submit", str(path), "--db", url, "--no-progress"]
    if workers:
        args += ["--workers", str(workers)]
    start = time.perf_counter()
    _hpo(*args)
    seconds = time.perf_counter() - start
    storage = Storage(url)
    study = storage.get_study(spec["name"])
    best = best_trials(storage, study.id, study_spec(study), 20)
    rows = [{"number": t.number, "value": t.value, **t.params} for t in best]
    _hpo("plot", spec["name"], "--no-search", "--top", "20", "-o", str(figure), "--db", url)
    counts = storage.counts(study.id)
    return {
        "study": spec["name"],
        "seconds": round(seconds, 2),
        "trials": sum(counts.values()),
        "complete": counts.get("COMPLETE", 0),
        "best20": rows,
        "test_result": study.test_result,
        "figure": str(figure),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="the study's seed (default 0)")
    parser.add_argument("--workers", type=int, default=None, help="local worker processes (default: cores)")
    parser.add_argument("--db", default=None, help="database URL (default: a fresh SQLite file)")
    parser.add_argument(
        "--figure", type=Path, default=ROOT / "docs" / "img" / "book-random-best20.png", help="PNG to write"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()
    args.figure.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hpo-book-") as tmp:
        result = run(args.seed, args.workers, args.db, args.figure.resolve(), Path(tmp))
    print(f"{result['study']}: {result['complete']}/{result['trials']} trials in {result['seconds']:.1f} s")
    print("\n".join(book_listing(result["best20"])))
    from hpo.orchestration import TestResult

    test = TestResult.from_dict(result["test_result"])
    if test is not None and test.test_acc is not None and test.reproduced_value is not None:
        print(
            f"winner (trial {test.trial_number}) retrained with its seed: "
            f"val {test.reproduced_value:.2f} (reproduced: {test.reproduced}), "
            f"test acc {test.test_acc:.3f} on {test.test_size} images"
        )
    print(f"figure: {result['figure']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
