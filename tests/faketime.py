"""libfaketime: run a process whose wall clock is off by a given amount (another host's clock)."""

from __future__ import annotations

from pathlib import Path

from tests.services import unavailable

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")


def skewed_env(skew: str) -> dict[str, str]:
    """Environment variables that put a child process's wall clock ``skew`` off (``"+30s"``, ``"-1h"``).

    Only the wall clock is faked: with a faked monotonic clock, timed waits (``threading.Event.wait``,
    Celery's timers, hpo's heartbeat thread) hang, because glibc's ``sem_clockwait`` is not
    intercepted. Without libfaketime the test fails under ``HPO_REQUIRE_SERVICES=1`` (CI), else skips.
    """
    if not LIBFAKETIME.exists():
        unavailable(f"{LIBFAKETIME} is missing: apt-get install faketime")
    return {"LD_PRELOAD": str(LIBFAKETIME), "FAKETIME": skew, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
