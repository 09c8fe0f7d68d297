"""What a test does when something it needs is missing: skip, or fail in CI.

``HPO_REQUIRE_SERVICES=1`` (set by ``.ci/run``) turns every such skip into a failure: in CI the
tests that need Redis, PostgreSQL, root, libfaketime or PgBouncer must run, never skip.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def required() -> bool:
    """Whether missing services fail the run (``HPO_REQUIRE_SERVICES=1``) rather than skip."""
    return os.environ.get("HPO_REQUIRE_SERVICES") == "1"


def unavailable(message: str) -> NoReturn:
    """Skip the current test for ``message``, or fail it when services are required."""
    if required():
        pytest.fail(f"HPO_REQUIRE_SERVICES=1 but {message}", pytrace=False)
    pytest.skip(message)
