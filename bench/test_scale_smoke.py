"""Smoke test of ``python -m bench.scale --quick``: both parts in miniature, checks only.

Part A: 300 idle sessions on aiohttp_spry and on raw aiohttp, from two client processes;
every session must open and get every publish. Part B: two processes on 127.0.0.2 and
127.0.0.3 through a real ``redis-server``, then a real 3-master Redis Cluster,
full-speed publishing for a second each. Exact
counts and clean clients, never speed. Run it from the repository root.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.scale.render import render, section
from bench.scale.run import QUICK, Config, run
from tests.support.clusterproc import redis_cli_path
from tests.support.optional import require_tool
from tests.support.redisproc import redis_server_path

HAS_REDIS = redis_server_path() is not None
HAS_CLUSTER = HAS_REDIS and redis_cli_path() is not None


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out: Path = tmp_path_factory.mktemp("scale")
    config = Config(**QUICK)
    config.output, config.json_output = out / "RESULTS-scale.md", out / "results-scale.json"
    config.pin = False  # do not pin the test process
    config.part_b = HAS_REDIS
    config.brokers = ("redis", "cluster") if HAS_CLUSTER else ("redis",)
    return run(config, "pytest bench/test_scale_smoke.py", log=lambda _: None)


@pytest.mark.timeout(120)
def test_the_quick_run_has_no_problems(results: dict[str, Any]) -> None:
    assert results["problems"] == []
    assert render(results).startswith("# aiohttp_spry scale benchmark results")
    assert section(results).startswith("## Scale: sessions per process")


def test_every_session_opened_on_both_servers_and_got_every_publish(
    results: dict[str, Any],
) -> None:
    legs = results["sessions"]
    assert sorted(leg["kind"] for leg in legs) == ["raw", "spry"]
    for leg in legs:
        assert leg["sessions"] == leg["target"] == QUICK["sessions"]
        assert leg["ramp"]["failed"] == 0
        assert leg["rss_after"] > leg["rss_before"]
        assert len(leg["publishes"]) == QUICK["publishes"]
        for publish in leg["publishes"]:
            assert publish["delivered"] == publish["received"] == QUICK["sessions"]
            assert 0 < publish["reach"]["p50"] <= publish["reach"]["max"]


@pytest.mark.parametrize("broker", ["redis", "cluster"])
def test_throughput_across_processes_through_each_broker(
    results: dict[str, Any], broker: str
) -> None:
    require_tool("redis-server", HAS_REDIS, "apt-get install -y redis-server")
    if broker == "cluster":
        require_tool("redis-cli", HAS_CLUSTER, "apt-get install -y redis-tools")
    (leg,) = [leg for leg in results["throughput"] if leg["broker"] == broker]
    assert leg["url"].startswith("redis+cluster://" if broker == "cluster" else "redis://")
    assert leg["published"] > 0
    # At most what was published reaches each process; a second at full speed loses none.
    assert leg["delivered"] == leg["expected"] == leg["published"] * QUICK["processes"]
    assert leg["latency_ms"]["local"]["n"] > 0
    assert leg["latency_ms"]["remote"]["n"] > 0


def test_the_section_in_results_md_is_replaced_and_survives_a_rewrite() -> None:
    from bench.report import kept_sections, with_section

    first = with_section("# Results\n\nfigures\n", "bench.scale", "## Scale\nold")
    second = with_section(first, "bench.scale", "## Scale\nnew")
    assert (
        second == "# Results\n\nfigures\n\n<!-- begin bench.scale -->\n## Scale\nnew\n"
        "<!-- end bench.scale -->\n"
    )
    # python -m bench rewrites RESULTS.md from scratch: the section is carried over.
    rewritten = kept_sections(second, "# Results\n\nnew figures\n")
    assert rewritten == second.replace("figures", "new figures")
