"""bench/RESULTS-scale.md, and its section of bench/RESULTS.md, from a ``bench.scale`` run."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from bench.report import cell, fmt, median, preamble, problems_or, table, versions

LABELS = {"spry": "aiohttp_spry", "raw": "raw aiohttp"}
#: The name of the section ``python -m bench.scale`` keeps in bench/RESULTS.md.
SECTION = "bench.scale"


def render(data: dict[str, Any]) -> str:
    """The whole results file: the run's facts, correctness, then the figures."""
    w = preamble(
        "aiohttp_spry scale benchmark results",
        data,
        "part A: the server on CPU {server_cpus}, its clients on CPU {client_cpus}; "
        "part B: nothing pinned (several servers, clients and the broker)",
    )
    soft, hard = data["client_nofile"]
    w.append(f"- RLIMIT_NOFILE raised to the hard limit: {soft}/{hard} (soft/hard)")
    w.append('- Method: bench/README.md, "Scale".\n')
    w += problems_or(data, "No errors: every session opened and got every message it was sent.")
    w += ["", *figures(data), versions(data["versions"])]
    return "\n".join(w)


def section(data: dict[str, Any]) -> str:
    """The figures alone, for bench/RESULTS.md (between ``<!-- bench.scale -->`` markers)."""
    head = [
        "## Scale: sessions per process, throughput across processes\n",
        f"`{data['command']}` at {data['revision']}, {data['date']} "
        f"(the whole run: [RESULTS-scale.md](RESULTS-scale.md)).",
    ]
    if data["problems"]:
        head.append(f"**{len(data['problems'])} problem(s) in this run: see RESULTS-scale.md.**")
    return "\n".join([*head, "", *figures(data, level="###")])


def figures(data: dict[str, Any], level: str = "##") -> list[str]:
    return [*sessions(data, level), *throughput(data, level)]


def sessions(data: dict[str, Any], level: str) -> list[str]:
    legs = data["sessions"]
    if not legs:
        return []
    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for leg in legs:
        by[leg["kind"]].append(leg)
    rows = []
    for kind in ("spry", "raw"):
        if not by[kind]:
            continue
        group = by[kind]
        reach = [p["reach"] for leg in group for p in leg["publishes"]]
        rows.append(
            f"{LABELS[kind]} | {min(leg['sessions'] for leg in group):,} of "
            f"{group[0]['target']:,} | {cell([leg['ramp']['seconds'] for leg in group], '.1f')} | "
            f"{fmt(median(leg['rss_before'] / 2**20 for leg in group), '.0f')} → "
            f"{fmt(median(leg['rss_after'] / 2**20 for leg in group), '.0f')} | "
            f"{cell([leg['bytes_per_session'] / 1024 for leg in group], '.1f')} | "
            f"{cell([r['p50'] * 1000 for r in reach], '.0f')} | "
            f"{cell([r['p99'] * 1000 for r in reach], '.0f')} | "
            f"{cell([r['max'] * 1000 for r in reach], '.0f')} | "
            f"{cell([p['server_loop'] * 1000 for leg in group for p in leg['publishes']], '.0f')}"
        )
    ratio = []
    if by["spry"] and by["raw"]:
        spry = median(leg["bytes_per_session"] for leg in by["spry"])
        raw = median(leg["bytes_per_session"] for leg in by["raw"])
        reach_spry = median(p["reach"]["max"] for leg in by["spry"] for p in leg["publishes"])
        reach_raw = median(p["reach"]["max"] for leg in by["raw"] for p in leg["publishes"])
        ratio.append(
            f"\naiohttp_spry / raw aiohttp: memory per session {fmt(spry / raw, '.3f')} "
            f"({fmt((spry - raw) / 1024, '+.1f')} KiB), time until all reached "
            f"{fmt(reach_spry / reach_raw, '.3f')}."
        )
    rounds = max(leg["round"] for leg in legs) + 1
    publishes = len(legs[0]["publishes"])
    return [
        f"{level} Sessions per process\n",
        f"One server process on 127.0.0.2 asked to hold {legs[0]['target']:,} idle WebSocket "
        "sessions (by default its open-file limit less 100 descriptors of headroom), opened by "
        f"{data['config'].clients} client processes, each from a loopback address of its own; "
        f"{rounds} round(s), each aiohttp_spry and raw aiohttp in turn (mirrored on odd rounds); "
        f"{publishes} publishes of one message to every session per round, after an unrecorded "
        "warm-up publish. *Reach*: from the "
        "publish request (`time.time()` before the POST) to the kernel's receive time of the "
        "message on the session's socket (`SO_TIMESTAMPNS`, the same clock), over all "
        "sessions of all publishes: median (min–max) over publishes. "
        "*Server loop*: the server's own time in its publish call.\n",
        table(
            "server | sessions held | ramp-up s | RSS MiB before → after | KiB per session | "
            "reach p50 ms | reach p99 ms | all reached (max) ms | server loop ms",
            rows,
        )
        + "".join(ratio)
        + "\n",
    ]


def throughput(data: dict[str, Any], level: str) -> list[str]:
    legs = data["throughput"]
    if not legs:
        return []
    c = data["config"]
    rows, missing = [], []
    for leg in legs:
        if "missing" in leg:
            missing.append(f"- {leg['broker']}: not measured: {leg['missing']}")
            continue
        lat = leg["latency_ms"]
        rows.append(
            f"{leg['broker']} | {leg['processes']} × {leg['topics']:,} | "
            f"{leg['published_per_s']:,.0f} | {leg['deliveries_per_s']:,.0f} | "
            f"{leg['delivered'] / leg['expected'] if leg['expected'] else 0:.4f} | "
            f"{lat['all']['p50']:.2f} / {lat['all']['p99']:.2f} | "
            f"{lat['local']['p50']:.2f} / {lat['local']['p99']:.2f} | "
            f"{lat['remote']['p50']:.2f} / {lat['remote']['p99']:.2f} | "
            + " + ".join(f"{cpu / leg['seconds']:.2f}" for cpu in leg["server_cpu"])
            + " | "
            + (
                " + ".join(f"{cpu / leg['seconds']:.2f}" for cpu in leg.get("broker_cpu", []))
                or "n/a"
            )
        )
    measured = [leg for leg in legs if "missing" not in leg]
    ratio = []
    by = {leg["broker"]: leg for leg in measured}
    if "redis" in by and "cluster" in by:
        one, three = by["redis"], by["cluster"]
        ratio.append(
            "\n3-shard cluster / one node: deliveries/s "
            f"{three['deliveries_per_s'] / one['deliveries_per_s']:.2f}×."
        )
        if one.get("broker_cpu") and three.get("broker_cpu"):
            # Redis CPU per published message: on the busiest node, and in all.
            def per_message(leg: dict[str, Any], cpus: list[float]) -> float:
                return float(sum(cpus) / leg["published"] * 1e6)

            busiest = max(three["broker_cpu"])
            ratio.append(
                " Redis CPU per published message: one node "
                f"{per_message(one, one['broker_cpu']):.1f} µs; the cluster's busiest shard "
                f"{per_message(three, [busiest]):.1f} µs, all shards "
                f"{per_message(three, three['broker_cpu']):.1f} µs: the busiest node carries "
                f"{busiest / sum(three['broker_cpu']):.0%} of the cluster's Redis work, so "
                "on hosts of their own a 3-shard cluster carries about "
                f"{per_message(one, one['broker_cpu']) / per_message(three, [busiest]):.1f}× "
                "the messages one node does before a Redis core is full. Here the aiohttp_spry "
                "processes, their clients and Redis share 2 cores, so the processes, not "
                "Redis, set the deliveries/s."
            )
    return [
        f"{level} Throughput across processes\n",
        f"{c.processes} aiohttp_spry processes on 127.0.0.2, 127.0.0.3, … (separate hosts to "
        f"the broker), each with one session per topic ({c.topics:,} topics) from a client "
        f"process of its own, and {c.publishers} publisher tasks per process sending "
        "`ORIGIN SEQ STAMP` to random topics at full speed (yielding after each message) for "
        f"{c.seconds:g} s after a {c.warmup:g} s warm-up. Every message reaches one session in "
        "each process: *delivered* counts them all, *complete* is delivered / (published × "
        "processes). Latency: from the publisher's `time.time_ns()` to the kernel's receive time "
        "of the segment on the client socket (`SO_TIMESTAMPNS`), "
        "p50 / p99 in ms, *local* in the publishing process, *remote* through the broker. "
        "*Server cores*: each process's CPU seconds per second; *Redis cores*: each "
        "redis-server's (one node, or each shard).\n",
        table(
            "broker | processes × sessions | published/s | delivered/s | complete | "
            "latency all ms | local ms | remote ms | server cores | Redis cores",
            rows,
        )
        + "".join(ratio),
        *missing,
        "",
    ]
