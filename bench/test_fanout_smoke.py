"""Smoke test of the fan-out benchmark: ``python -m bench.fanout --quick`` in miniature.

N=50 subscribers per contender (raw aiohttp loop, aiohttp_spry, python-socketio),
two rounds of small bursts, then the latency stream through a real
``redis-server`` (skipped when there is none). Checks correctness only (exact
counts, every frame decoded), never speed. Run it from the repository root.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.fanout.run import CONTENDERS, QUICK, Config, round_order, run
from tests.support.optional import require_tool
from tests.support.redisproc import redis_server_path

HAS_REDIS = redis_server_path() is not None


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out: Path = tmp_path_factory.mktemp("fanout")
    config = Config(**QUICK)
    config.output = out / "RESULTS-fanout.md"
    config.json_output = out / "results-fanout.json"
    config.pin = False  # do not pin the test process
    config.quiet_wait = 0.0  # never wait for neighbours in a test
    config.redis = HAS_REDIS
    data = run(config, "pytest bench/test_fanout_smoke.py", log=lambda _: None)
    assert config.output.read_text().startswith("# aiohttp_spry fan-out benchmark results")
    return data


def test_no_problems(results: dict[str, Any]) -> None:
    assert results["problems"] == []


def test_every_burst_is_exact(results: dict[str, Any]) -> None:
    bursts = results["bursts"]
    n = QUICK["sizes"][0]
    assert {b["contender"] for b in bursts} == {"raw", "spry", "socketio"}
    rounds: int = QUICK["rounds"]
    assert [b["contender"] for b in bursts] == [
        name for r in range(rounds) for name in round_order(CONTENDERS, r)
    ]
    for burst in bursts:
        assert burst["errors"] == []
        assert burst["subscribers"] == n
        assert burst["messages"] >= 2
        # Counted by the client on every socket: exactly N x k, nothing lost or extra.
        assert burst["deliveries"] == n * burst["messages"]
        # sample_every=1 in the quick mode: every frame of every subscriber decoded.
        assert burst["verified"] == burst["deliveries"]


def test_summary_has_the_ratios(results: dict[str, Any]) -> None:
    summary = results["summary"][str(QUICK["sizes"][0])]
    assert set(summary["table"]) == {"raw", "spry", "socketio"}
    assert {"spry/raw", "spry/socketio"} <= set(summary["ratios"])


def test_redis_latency_stream_is_exact(results: dict[str, Any]) -> None:
    # Like the other optional tools: a skip on a laptop, a failure in CI.
    require_tool("redis-server", HAS_REDIS, "apt-get install -y redis-server")
    redis = results["redis"]
    assert redis is not None
    assert redis["numsub"] == 2  # both processes subscribed in Redis
    half = redis["subscribers_per_process"]
    counted = redis["messages"] - redis["warmup_messages"]
    for side in ("A", "B"):
        stats = redis["sides"][side]
        assert stats["deliveries"] == stats["expected"] == half * counted
        assert stats["min_ms"] > 0  # after the publish, never before
    # Every frame of every subscriber decoded, warm-up included.
    assert redis["verified"] == 2 * half * redis["messages"]
    assert redis["publisher"]["delivered"] == half * redis["messages"]
