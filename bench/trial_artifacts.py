"""What keeping trained networks costs a book-protocol trial, and what it saves a study.

Usage::

    python bench/trial_artifacts.py [--trials 15] [--json PATH]

Runs book-protocol trials (``examples/mnist-book-random.yaml``: 784-[100]x6-10, SGD, 400/100
MNIST rows, 50 epochs) through ``hpo.orchestration.run_trial`` as a worker does (claim, train,
finish, on a fresh SQLite database), alternating between studies that differ only in their
artifact store and checkpoint policy:

- ``no store``: a study made before models were kept (nothing is written);
- ``default``: the file store beside the database, ``checkpoints.every`` at its default (the
  final model only, for a 50-epoch trial);
- ``every 25``, ``every 10`` and ``every 1``: also a checkpoint every 25 or 10 epochs, or after
  every epoch.

It then times the end of a study both ways: scoring the winner's saved model on the test split
(what a study does now) against retraining it from its seed (what it did before, and what it
still does without a model). Medians; the overheads are against ``no store`` in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# None: no artifact store; -1: the default policy.
POLICIES: dict[str, int | None] = {
    "no store": None,
    "default": -1,
    "every 25": 25,
    "every 10": 10,
    "every 1": 1,
}


def _studies(storage: Any, tmp: Path, trials: int) -> dict[str, Any]:
    from hpo import orchestration as orch
    from hpo.artifacts import open_store, resolve_store_url
    from hpo.spec import DEFAULT_CHECKPOINT_EVERY, load_study_spec

    base = load_study_spec(ROOT / "examples" / "mnist-book-random.yaml")
    studies = {}
    for i, (label, every) in enumerate(POLICIES.items()):
        update: dict[str, Any] = {"name": f"bench-{i}"}
        update["checkpoints"] = base.checkpoints.model_copy(
            update={"every": DEFAULT_CHECKPOINT_EVERY if every in (None, -1) else every}
        )
        update["search"] = base.search.model_copy(
            update={"stages": [base.search.stages[0].model_copy(update={"trials": trials + 1})]}
        )
        spec = base.model_copy(update=update)
        url = None
        if every is not None:
            url = resolve_store_url(storage.url, str(tmp / f"store-{i}"))
            open_store(url).check()
        study, _ = storage.create_study(
            spec.name or "",
            spec.canonical_json(),
            spec.spec_hash(),
            spec.objective.direction,
            orch.first_stage_draft(spec),
            metric_name=spec.objective.metric,
            artifacts=url,
        )
        studies[label] = study
    return studies


def measure(trials: int) -> dict[str, Any]:
    from hpo import orchestration as orch
    from hpo.orchestration import _evaluation
    from hpo.storage import Storage

    with tempfile.TemporaryDirectory(prefix="hpo-bench-") as tmp_name:
        tmp = Path(tmp_name)
        storage = Storage(f"sqlite:///{tmp / 'hpo.db'}")
        storage.upgrade()
        studies = _studies(storage, tmp, trials)
        pending = {label: storage.trials(s.id) for label, s in studies.items()}
        cache: dict[str, Any] = {}
        seconds: dict[str, list[float]] = {label: [] for label in studies}
        # Warm-up: the data loaded, NumPy and the store's code paths run once.
        for label in studies:
            trial = pending[label].pop()
            claimed = storage.claim_with_study(trial.id, "bench", 600)
            assert claimed is not None
            orch.run_trial(storage, claimed[0], "bench", data_cache=cache, study=claimed[1])
        for i in range(trials):
            for label in studies if i % 2 == 0 else reversed(list(studies)):
                trial = pending[label][i]
                claimed = storage.claim_with_study(trial.id, "bench", 600)
                assert claimed is not None
                start = time.perf_counter()
                report = orch.run_trial(storage, claimed[0], "bench", data_cache=cache, study=claimed[1])
                seconds[label].append(time.perf_counter() - start)
                assert report.recorded
        # The end of a study: the winner scored from its saved model, or retrained.
        study = studies["default"]
        spec = orch.study_spec(study)
        winner = orch.best_trials(storage, study.id, spec, 1)[0]
        score, retrain = [], []
        for _ in range(5):
            start = time.perf_counter()
            scored = _evaluation._score_saved_model(storage, spec, study.id, winner)
            score.append(time.perf_counter() - start)
            start = time.perf_counter()
            retrained = _evaluation._retrain(spec, winner, "bench")
            retrain.append(time.perf_counter() - start)
            assert scored.test_acc == retrained.test_acc and retrained.reproduced
        sizes = sorted(p.stat().st_size for p in (tmp / "store-1").iterdir())
        storage.dispose()
    base = statistics.median(seconds["no store"])
    return {
        "trials": trials,
        "per_trial_s": {label: statistics.median(v) for label, v in seconds.items()},
        "overhead_pct": {label: 100 * (statistics.median(v) / base - 1) for label, v in seconds.items()},
        "model_bytes": sizes[len(sizes) // 2],
        "end_of_study_s": {
            "score saved model": statistics.median(score),
            "retrain": statistics.median(retrain),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=15, help="timed trials per policy")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    # bench/engine.py would shadow the engine package; one BLAS thread, as a worker process runs.
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    result = {"when": datetime.now(UTC).isoformat(timespec="seconds"), **measure(args.trials)}
    for label, s in result["per_trial_s"].items():
        print(f"{label:>9}: {s * 1000:7.1f} ms per trial ({result['overhead_pct'][label]:+.1f} %)")
    print(f"model artifact: {result['model_bytes']} bytes")
    end = result["end_of_study_s"]
    print(f"end of study: saved model scored in {end['score saved model'] * 1000:.1f} ms, "
          f"retrain {end['retrain'] * 1000:.1f} ms")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
