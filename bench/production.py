"""``python -m bench.production [--quick]``: the deployment figures, head-to-head, in one run.

Each comparison runs its two servers at the same time on the server CPU, the load split
between them by one client (so whatever slows the machine slows both alike), and takes the
ratio within the round; rounds alternate which server is listed first. Summaries are the
median and the range over rounds. Writes ``bench/RESULTS-production.md`` and its JSON.

| comparison | B / A | target |
|---|---|---|
| ``metrics`` | aiohttp_spry with ``enable_metrics`` / without, echo | ≥ 0.98 (costs ≤ 2%) |
| ``uvloop_vs_raw`` | aiohttp_spry on uvloop / raw aiohttp on asyncio, echo and handshakes | ≥ 1.2 |
| ``uvloop_vs_raw_uvloop`` | aiohttp_spry on uvloop / raw aiohttp on uvloop | ≥ 0.97 |
| ``aa_spry``, ``aa_raw`` | two identical processes (A/A: how far 1.0 moves by itself) | — |
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from bench import harness
from bench.client import Payload, Result, echo_load, handshake_load
from bench.harness import HERE, Option
from bench.system import Proc, versions


@attrs.frozen
class Server:
    name: str
    module: str
    args: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return self.name


SPRY = "bench.servers.spry_aiohttp"
RAW = "bench.servers.raw_aiohttp"
SERVERS = {
    s.name: s
    for s in (
        Server("spry", SPRY),
        Server("spry2", SPRY),
        Server("spry_metrics", SPRY, ("--metrics",)),
        Server("spry_uvloop", SPRY, ("--loop", "uvloop")),
        Server("raw", RAW),
        Server("raw2", RAW),
        Server("raw_uvloop", RAW, ("--loop", "uvloop")),
    )
}


@attrs.frozen
class Comparison:
    """``b`` against ``a`` (the ratio is b / a) on each figure, and the target it should meet."""

    a: str
    b: str
    figures: tuple[str, ...]
    target: float | None
    what: str


COMPARISONS = {
    "metrics": Comparison(
        "spry", "spry_metrics", ("echo_text_32", "echo_binary_4096"), 0.98,
        "aiohttp_spry with metrics on / off",
    ),
    "aa_spry": Comparison(
        "spry", "spry2", ("echo_text_32",), None, "A/A: aiohttp_spry / aiohttp_spry"
    ),
    "uvloop_vs_raw": Comparison(
        "raw", "spry_uvloop", ("echo_text_32", "handshakes"), 1.2,
        "aiohttp_spry on uvloop / raw aiohttp on asyncio",
    ),
    "uvloop_vs_raw_uvloop": Comparison(
        "raw_uvloop", "spry_uvloop", ("echo_text_32", "handshakes"), 0.97,
        "aiohttp_spry on uvloop / raw aiohttp on uvloop",
    ),
    "aa_raw": Comparison(
        "raw", "raw2", ("echo_text_32", "handshakes"), None, "A/A: raw aiohttp / raw aiohttp"
    ),
}  # fmt: skip


@attrs.define
class Config(harness.Settings):
    output: Path = HERE / "RESULTS-production.md"
    warmup: float = 0.75
    duration: float = 2.5
    echo_connections: int = 64
    echo_window: int = 32
    handshake_concurrency: int = 64
    comparisons: tuple[str, ...] = tuple(COMPARISONS)


QUICK: dict[str, Any] = dict(
    rounds=1, warmup=0.3, duration=0.8, retries=1, quiet_wait=3.0, noise_budget=15.0
)  # fmt: skip


def comparisons_option(text: str) -> tuple[str, ...]:
    names = harness.comma_list(text)
    unknown = [name for name in names if name not in COMPARISONS]
    if unknown:
        raise ValueError(f"unknown comparisons {unknown}; choose from {sorted(COMPARISONS)}")
    return names


class Production(harness.Harness):
    config: Config

    def __init__(self, config: Config, log: harness.Log) -> None:
        super().__init__(config, log, "spry-bench-production-")
        self.config = config
        self.samples: list[dict[str, Any]] = []

    def load(self, figure: str, procs: list[Proc]) -> list[Result]:
        c = self.config
        ports = [p.port for p in procs]
        probes = [p.cpu for p in procs]
        if figure == "handshakes":
            return handshake_load(
                ports,
                concurrency=c.handshake_concurrency // 2,
                warmup=c.warmup,
                duration=c.duration,
                probes=probes,
            )
        payload = (
            Payload.text(32, c.echo_window)
            if figure == "echo_text_32"
            else Payload.binary(4096, c.echo_window)
        )
        return echo_load(
            ports,
            payload,
            connections=c.echo_connections // 2,
            warmup=c.warmup,
            duration=c.duration,
            probes=probes,
        )

    def measure(self, name: str, figure: str, a: Proc, b: Proc, round_no: int) -> None:
        order = [a, b] if round_no % 2 == 0 else [b, a]

        def once() -> list[Result]:
            return self.load(figure, order)

        def other(results: list[Result]) -> float:
            busy = results[0].cpu_busy
            used = results[0].client_cpu / results[0].seconds + sum(
                r.server_cpu / r.seconds for r in results
            )
            return sum(busy.values()) - used if busy else 0.0

        results, attempts, _ = self.until_quiet(f"{name} {figure}", once, other)
        by_proc = dict(zip([p.name for p in order], results, strict=True))
        for proc in order:
            totals = by_proc[proc.name].totals
            if totals.error_count:
                self.problems.append(
                    f"{name} {figure} on {proc.name}: {totals.error_count} error(s), "
                    f"first: {'; '.join(totals.errors[:3])}"
                )
            if figure.startswith("echo_") and totals.verified == 0:
                self.problems.append(f"{name} {figure} on {proc.name}: no echo was checked")
        rate_a, rate_b = by_proc[a.name].rate, by_proc[b.name].rate
        ratio = rate_b / rate_a if rate_a else 0.0
        self.log(
            f"  {name:<22} {figure:<17} {a.name} {rate_a:>9.0f}/s  {b.name} {rate_b:>9.0f}/s"
            f"  ratio {ratio:.3f}"
        )
        self.samples.append(
            dict(comparison=name, figure=figure, round=round_no, a=rate_a, b=rate_b,
                 ratio=ratio, attempts=attempts)
        )  # fmt: skip

    def run(self) -> dict[str, Any]:
        c = self.config
        chosen = {name: COMPARISONS[name] for name in c.comparisons}
        needed = sorted({s for comp in chosen.values() for s in (comp.a, comp.b)})
        for round_no in range(c.rounds):
            self.log(f"round {round_no + 1}/{c.rounds}")
            procs = {
                name: Proc(
                    SERVERS[name].module, name, self.server_cpus, self.workdir,
                    *SERVERS[name].args, name=name,
                )
                for name in needed
            }  # fmt: skip
            try:
                for proc in procs.values():
                    proc.start()
                for name, comp in chosen.items():
                    for figure in comp.figures:
                        self.measure(name, figure, procs[comp.a], procs[comp.b], round_no)
            finally:
                for proc in procs.values():
                    proc.stop()
        return {
            "samples": self.samples,
            "summary": summarise(self.samples, chosen),
            "versions": versions("uvloop", "prometheus_client"),
        }


def summarise(samples: list[dict[str, Any]], chosen: dict[str, Comparison]) -> list[dict[str, Any]]:
    rows = []
    for name, comp in chosen.items():
        for figure in comp.figures:
            key = (name, figure)
            ratios = [s["ratio"] for s in samples if (s["comparison"], s["figure"]) == key]
            if not ratios:
                continue
            median = statistics.median(ratios)
            rows.append(
                dict(comparison=name, what=comp.what, figure=figure, median=median,
                     low=min(ratios), high=max(ratios), rounds=len(ratios), target=comp.target,
                     met=None if comp.target is None else median >= comp.target)
            )  # fmt: skip
    return rows


def render(data: dict[str, Any]) -> str:
    lines = [
        "# Deployment figures: metrics overhead and uvloop",
        "",
        f"`{data['command']}`, {data['date']}, revision {data['revision']}.",
        "Head-to-head: both servers of a comparison on the server CPU at once, the load split",
        "between them by one client; ratio B / A within each round; median and range over",
        f"{data['config'].rounds} round(s). The A/A rows show how far 1.0 moves by itself.",
        "",
    ]
    for problem in data["problems"]:
        lines.append(f"**Problem:** {problem}")
    lines += [
        "| comparison | figure | B / A median | range | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for row in data["summary"]:
        target = "—" if row["target"] is None else f"≥ {row['target']}"
        met = "—" if row["met"] is None else ("yes" if row["met"] else "**no**")
        lines.append(
            f"| {row['what']} | {row['figure']} | {row['median']:.3f} | "
            f"{row['low']:.3f}–{row['high']:.3f} | {target} | {met} |"
        )
    lines += ["", "| package | version |", "|---|---|"]
    lines += [f"| {name} | {version} |" for name, version in data["versions"].items()]
    return "\n".join(lines) + "\n"


OPTIONS = [
    Option("--rounds", "rounds (the order of each pair alternates)", int),
    Option("--duration", "measured seconds per figure", float),
    Option("--warmup", "unmeasured seconds before each window", float),
    Option("--comparisons", f"a subset of {','.join(COMPARISONS)}", comparisons_option),
    Option("--output", "where to write the Markdown results", Path),
]


def main(argv: list[str] | None = None, log: Callable[[str], None] = harness.printer) -> int:
    config, _, command = harness.parse(
        argv,
        "python -m bench.production",
        "Metrics overhead and uvloop ratios, head-to-head; writes bench/RESULTS-production.md.",
        Config,
        QUICK,
        OPTIONS,
    )
    bench = Production(config, log)
    json_output = config.output.with_name(config.output.stem.lower() + ".json")
    data = harness.run(bench, command, bench.run, render, json_output)
    return 1 if data["problems"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
