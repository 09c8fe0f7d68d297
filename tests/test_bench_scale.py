"""bench/scale.py end to end, tiny: real workers, Redis and PostgreSQL; the report's numbers and
its invariant checks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.cli import ROOT
from tests.workers.conftest import WORKERS_REDIS_DB, redis_db_url


def test_a_tiny_run_reports_throughput_latency_connections_and_sound_studies(
    tmp_path: Path, redis_url: str, postgres_url: str
) -> None:
    out, png = tmp_path / "scale.json", tmp_path / "scale.png"
    broker = redis_db_url(redis_url, WORKERS_REDIS_DB)
    cmd = [sys.executable, "bench/scale.py", "--processes", "3", "--studies", "2", "--trials", "16"]
    cmd += ["--sleep", "0", "--baseline-trials", "0", "--no-vacuum"]  # the sleep kind: the same code
    cmd += ["--broker", broker, "--db", postgres_url, "--json", str(out), "--plot", str(png)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    assert png.stat().st_size > 10_000
    assert result["runs"]["sleep"] == []
    (run,) = result["runs"]["noop"]
    assert run["processes"] == 3 and run["trials"] == 2 * 16
    assert run["logged_trials"] == run["trials"]  # every trial's timing line was read
    assert run["trials_per_s"] > 0 and run["claim_ms"]["p99"] >= run["claim_ms"]["p50"] > 0
    assert run["first_claim_ms"]["max"] >= run["first_claim_ms"]["p50"] > 0  # one per pool process
    assert run["later_claim_ms"]["p99"] >= run["later_claim_ms"]["p50"] > 0
    assert run["connection_errors"] == 0
    # Workers: one connection per pool process, and one for each worker's main process.
    assert 1 <= run["worker_connections_peak"] <= run["processes"] + run["workers"]
    assert all(v == 0 for v in run["invariants"].values()), run["invariants"]
