"""Smoke test of ``python -m bench.history --quick``: every part runs and every check holds.

Correctness only (exact deliveries in order, contiguous offsets, every stormed member
recovered), never speed. Needs a ``redis-server`` for the Redis parts (required in CI).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.history import QUICK, Config, render, run
from tests.support.optional import require_tool
from tests.support.redisproc import redis_server_path


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import asyncio

    out: Path = tmp_path_factory.mktemp("history")
    config = Config(**QUICK)
    config.output, config.json_output = out / "RESULTS.md", out / "results.json"
    config.redis = redis_server_path() is not None
    return asyncio.run(run(config, "pytest bench/test_history_smoke.py"))


@pytest.mark.timeout(300)
def test_the_quick_run_has_no_problems(results: dict[str, Any]) -> None:
    assert results["problems"] == []
    assert [part["broker"] for part in results["fanout"]][:1] == ["memory"]
    assert render(results).startswith("# aiohttp_spry history benchmark results")


def test_the_quick_run_measured_redis_too(results: dict[str, Any]) -> None:
    require_tool("redis-server", redis_server_path() is not None, "apt-get install -y redis-server")
    assert [part["broker"] for part in results["fanout"]] == ["memory", "redis"]
    assert set(results["latency"]) == {
        "history local",
        "history remote",
        "no history local",
        "no history remote",
    }
    assert all(row["deliveries"] > 0 for row in results["latency"].values())
    assert [part["broker"] for part in results["storm"]] == ["memory", "redis"]
