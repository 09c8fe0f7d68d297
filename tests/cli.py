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


def start_hpo(*args: str, cwd: Path = ROOT, new_session: bool = False) -> subprocess.Popen[str]:
    """``python -m hpo ARGS`` started in the background, output piped as text."""
    command = [sys.executable, "-m", "hpo", *args]
    return subprocess.Popen(
        command,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=new_session,
    )


def wait_for_complete(db: str, name: str, n: int, timeout: float = 60, also: object = None) -> None:
    """Wait until study ``name`` in ``db`` has ``n`` COMPLETE trials (and ``also()`` is true)."""
    import time

    from hpo.storage import Storage

    storage = Storage(db)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.2)
        try:
            study = storage.find_study(name)
            done = study is not None and storage.counts(study.id).get("COMPLETE", 0) >= n
            if done and (also is None or also()):  # type: ignore[operator]
                return
        except Exception:  # the submitting process has not created the tables yet
            continue
    raise AssertionError(f"study {name} did not reach {n} complete trials in {timeout:g} s")
