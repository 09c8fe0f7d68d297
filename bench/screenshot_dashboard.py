"""Regenerate ``docs/img/dashboard-study.png``: optuna-dashboard showing a study that hpo ran.

Usage::

    python bench/screenshot_dashboard.py [--study examples/digits.yaml] [-o docs/img/dashboard-study.png]

Runs the study with ``hpo submit`` into a new SQLite file in a temporary directory, starts
``optuna-dashboard`` on that file on a free loopback port, and takes a headless screenshot of the
study's page with Chromium (Debian's ``chromium`` package: ``apt-get install -y chromium``). The
dashboard is a JavaScript app: Chromium is given a virtual time budget to draw its charts. Not a
test: it makes a figure for the README.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# bench/queue.py would shadow the standard library's `queue`: take this script's directory off the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_study(study: Path, db: str) -> None:
    cmd = [sys.executable, "-m", "hpo", "submit", str(study), "--db", db, "--no-progress"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"hpo submit failed ({proc.returncode}):\n{proc.stderr}")


def _only_study(base: str, timeout: float = 30.0) -> tuple[int, str]:
    """Wait for the dashboard to answer; the id and name of the one study in the new database."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{base}/api/studies", timeout=5) as response:
                [study] = json.load(response)["study_summaries"]
            return int(study["study_id"]), str(study["study_name"])
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"optuna-dashboard did not answer at {base} in {timeout:g} s") from None
            time.sleep(0.2)


def _screenshot(url: str, out: Path, profile: Path, size: str, budget_ms: int) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium not found: apt-get install -y chromium")
    cmd = [
        chromium,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        f"--window-size={size}",
        f"--virtual-time-budget={budget_ms}",
        f"--screenshot={out}",
        url,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0 or not out.is_file():
        raise SystemExit(f"chromium failed ({proc.returncode}):\n{proc.stderr}")


def main(argv: list[str] | None = None) -> int:
    """Run the study, start the dashboard, take the screenshot; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, default=ROOT / "examples" / "digits.yaml")
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "docs" / "img" / "dashboard-study.png")
    parser.add_argument("--window-size", default="1400,900")
    parser.add_argument("--budget-ms", type=int, default=10000, help="Chromium's virtual time budget")
    args = parser.parse_args(argv)
    dashboard_bin = Path(sys.executable).with_name("optuna-dashboard")
    dashboard = str(dashboard_bin) if dashboard_bin.exists() else shutil.which("optuna-dashboard")
    if dashboard is None:
        raise SystemExit("optuna-dashboard not found: pip install -e '.[test]'")
    with tempfile.TemporaryDirectory() as tmp:
        db = f"sqlite:///{Path(tmp) / 'hpo.db'}"
        _run_study(args.study, db)
        port = _free_port()
        server = subprocess.Popen(
            [dashboard, db, "--host", "127.0.0.1", "--port", str(port), "--quiet"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            study_id, name = _only_study(base)
            args.output.parent.mkdir(parents=True, exist_ok=True)
            page = f"{base}/dashboard/studies/{study_id}"
            _screenshot(page, args.output, Path(tmp) / "chromium", args.window_size, args.budget_ms)
        finally:
            server.terminate()
            server.wait(timeout=10)
    print(f"{args.output}: {args.output.stat().st_size // 1024} kB, study {name} at {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
