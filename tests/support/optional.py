"""Optional tools (Node, Chromium, redis-server, gunicorn): skip on a laptop, fail in CI."""

from __future__ import annotations

import os

import pytest

#: ``.ci/run`` sets it to ``1``: a missing tool then fails its tests instead of skipping.
REQUIRE_ENV = "SPRY_REQUIRE_OPTIONAL"


def require_tool(name: str, available: bool, reason: str) -> None:
    """Skip the test when ``name`` is missing, or fail it under ``SPRY_REQUIRE_OPTIONAL=1``."""
    if available:
        return
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{name} is required ({REQUIRE_ENV}=1) but unavailable: {reason}")
    pytest.skip(f"{name} unavailable: {reason}")
