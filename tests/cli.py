"""Running the real ``hpo`` command line from tests, as a user does: a new process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_hpo(*args: str, cwd: Path = ROOT, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``python -m hpo ARGS`` in ``cwd``, output captured as text, never raising on its exit code."""
    command = [sys.executable, "-m", "hpo", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
