"""Helpers shared by the third-party client tests (synchronous: no event loop runs here)."""

from __future__ import annotations

import time

from tests.e2e.helpers import IO_TIMEOUT, ServerProcess


def wait_for_log(server: ServerProcess, *needles: str, timeout: float = IO_TIMEOUT) -> str:
    """Wait (bounded) until the server log contains every needle; return the log."""
    deadline = time.monotonic() + timeout
    while True:
        log = server.log()
        if all(needle in log for needle in needles):
            return log
        if time.monotonic() >= deadline:
            missing = [needle for needle in needles if needle not in log]
            raise AssertionError(f"server log lacks {missing!r} after {timeout}s:\n{log}")
        time.sleep(0.05)
