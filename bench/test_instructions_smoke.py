"""Smoke test of ``bench/instructions.py``: servers start under callgrind, every operation
is checked, and each count is plausible. Never speed. Needs valgrind (required in CI)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.instructions import LOADS, count, render, valgrind
from tests.support.optional import require_tool


@pytest.mark.timeout(400)
def test_raw_and_spry_are_counted_per_operation(tmp_path: Path) -> None:
    require_tool("valgrind", valgrind() is not None, "apt-get install -y valgrind")
    counts = [
        *count("raw", LOADS, ops=3, warmup=3, work=tmp_path),
        *count("spry", LOADS, ops=3, warmup=3, work=tmp_path),
    ]
    assert [(c.server, c.load) for c in counts] == [
        (server, load) for server in ("raw", "spry") for load in LOADS
    ]
    for c in counts:
        # A lifecycle or a request is hundreds of thousands of instructions: a count
        # of a few (a dump read too early) or of the whole process would be far off.
        assert 50_000 < c.per_op < 20_000_000, c
    report = render(counts, ops=3, warmup=3)
    assert report.startswith("# Instructions per operation (callgrind)")
    for load in LOADS:
        assert f"| {load} | " in report
