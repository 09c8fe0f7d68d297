"""Time a whole study end to end on the embedded default (SQLite + local worker processes).

Usage::

    python bench/study.py [--study examples/mnist-book-random.yaml] [--repeats 3] [--workers N] [--json PATH]

Each repeat runs ``hpo submit STUDY --db sqlite:///<fresh temp file>`` as a user would (a new
process, the real CLI), timing from process start to exit, and checks that the study completed
with exactly its budget of finished trials. The default study is the book's ch. 6.5 random search:
100 trials of 784-[100]x6-10 on 500 MNIST images for 50 epochs.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run_once(study: Path, workers: int | None) -> dict[str, float | int | str]:
    with tempfile.TemporaryDirectory(prefix="hpo-bench-") as tmp:
        db = Path(tmp) / "bench.db"
        cmd = [sys.executable, "-m", "hpo", "submit", str(study), "--db", f"sqlite:///{db}", "--no-progress"]
        if workers:
            cmd += ["--workers", str(workers)]
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"hpo submit failed ({proc.returncode}):\n{proc.stderr}")
        with sqlite3.connect(db) as conn:
            states = dict(conn.execute("select state, count(*) from hpo_trials group by state").fetchall())
            study_state = conn.execute("select state from hpo_studies").fetchone()[0]
        return {
            "seconds": seconds,
            "study_state": study_state,
            "trials": sum(states.values()),
            "complete": states.get("COMPLETE", 0),
            "failed": states.get("FAIL", 0),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, default=ROOT / "examples" / "mnist-book-random.yaml")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None, help="default: one per core")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    runs = []
    for i in range(args.repeats):
        r = _run_once(args.study, args.workers)
        runs.append(r)
        print(
            f"run {i + 1}: {r['seconds']:.2f} s, study {r['study_state']}, {r['complete']} complete, "
            f"{r['failed']} failed",
            flush=True,
        )
    seconds = [float(r["seconds"]) for r in runs]
    result = {
        "timestamp_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "study": str(args.study.relative_to(ROOT) if args.study.is_relative_to(ROOT) else args.study),
        "workers": args.workers or len(os.sched_getaffinity(0)),
        "repeats": args.repeats,
        "study_seconds_median": statistics.median(seconds),
        "study_seconds_min": min(seconds),
        "study_seconds_max": max(seconds),
        "runs": runs,
    }
    print(
        f"median {result['study_seconds_median']:.2f} s (min {result['study_seconds_min']:.2f}, "
        f"max {result['study_seconds_max']:.2f}) over {args.repeats} runs with {result['workers']} workers"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
