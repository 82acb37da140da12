"""Summaries (medians, min-max, per-round ratios to raw aiohttp) and the RESULTS.md text."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from bench.servers import KINDS

BASELINE = "raw"
H2H = "h2h_"
AA = "aa_"
TWIN = "raw2"

FIGURES: dict[str, tuple[str, str]] = {
    # figure: (title, unit)
    "echo_text_32": ("Echo, 32-byte text messages", "msg/s"),
    "echo_binary_4096": ("Echo, 4 KiB binary messages", "msg/s"),
    "handshakes": ("Full WebSocket lifecycles (upgrade + close handshake + TCP close)", "conn/s"),
    "http": ("HTTP GET /hello (wrk)", "req/s"),
    "idle_memory": ("Server RSS per idle open WebSocket", "bytes/session"),
}

#: figure -> minimum ratio to raw aiohttp (for idle memory: maximum extra bytes per session).
TARGETS: dict[str, float] = {
    "echo_text_32": 0.97,
    "echo_binary_4096": 0.97,
    "handshakes": 0.95,
    "http": 0.95,
    "idle_memory": 1024.0,
}


def median(values: Iterable[float]) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


def span(values: Sequence[float], fmt: str) -> str:
    if not values:
        return "n/a"
    return f"{format(min(values), fmt)}–{format(max(values), fmt)}"


def label(kind: str) -> str:
    if kind == TWIN:
        return "raw aiohttp (second process)"
    return KINDS[kind][1]


class Table:
    """Samples of one figure, indexed by server and round."""

    def __init__(self, samples: list[Any]) -> None:
        self.by_server: dict[str, dict[int, Any]] = defaultdict(dict)
        for sample in samples:
            self.by_server[sample.server][sample.round] = sample

    def values(self, kind: str) -> list[float]:
        return [s.value for s in self.by_server.get(kind, {}).values()]

    def paired(self, kind: str, other: str, how: str = "ratio") -> list[float]:
        """Per-round ``kind / other`` (or ``kind - other``), rounds where both were measured."""
        mine = self.by_server.get(kind, {})
        theirs = self.by_server.get(other, {})
        out = []
        for round_no in sorted(set(mine) & set(theirs)):
            a, b = mine[round_no].value, theirs[round_no].value
            out.append(a / b if how == "ratio" else a - b)
        return out

    def per_cpu_ratio(self, kind: str, other: str) -> list[float]:
        """Per-round ratio of operations per server CPU-second (throughput if both servers
        had had a whole core to themselves; robust to a neighbour stealing CPU time)."""
        mine = self.by_server.get(kind, {})
        theirs = self.by_server.get(other, {})
        out = []
        for round_no in sorted(set(mine) & set(theirs)):
            a, b = mine[round_no], theirs[round_no]
            if a.server_share and b.server_share:
                out.append((a.value / a.server_share) / (b.value / b.server_share))
        return out

    def field(self, kind: str, name: str) -> list[float]:
        return [getattr(s, name) for s in self.by_server.get(kind, {}).values()]

    def busy(self, kind: str, cpu: str) -> list[float]:
        return [s.cpu_busy.get(cpu, 0.0) for s in self.by_server.get(kind, {}).values()]

    def other(self, kind: str) -> list[float]:
        """CPU busy on all cores minus the server's and the client's own process time:
        kernel network work not charged to a process, plus anything else running."""
        return [s.other() for s in self.by_server.get(kind, {}).values() if s.cpu_busy]


def render(samples: list[Any], ctx: dict[str, Any]) -> str:
    config = ctx["config"]
    kinds = [kind for kind in config.servers if any(s.server == kind for s in samples)]
    tables = {
        figure: Table([s for s in samples if s.figure == figure])
        for figure in FIGURES
        if any(s.figure == figure for s in samples)
    }
    pairs = {
        figure: Table([s for s in samples if s.figure == H2H + figure])
        for figure in FIGURES
        if any(s.figure == H2H + figure for s in samples)
    }
    controls = {
        figure: Table([s for s in samples if s.figure == AA + figure])
        for figure in FIGURES
        if any(s.figure == AA + figure for s in samples)
    }
    out: list[str] = []
    w = out.append
    w("# aiohttp_spry benchmark results\n")
    w(f"- Command: `{ctx['command']}` (from the repository root)")
    w(f"- Date: {ctx['date']}; wall time {ctx['wall_seconds'] / 60:.1f} min")
    w(f"- aiohttp_spry revision: {ctx['revision']}")
    machine = ctx["machine"]
    w(
        f"- Machine: {machine['nproc']} CPUs ({machine['CPU model']}), {machine['memory']}, "
        f"Linux {machine['kernel']}"
    )
    if ctx["server_cpus"] is not None:
        w(
            f"- Pinning: servers on CPU {sorted(ctx['server_cpus'])}, client (and wrk, py-spy) "
            f"on CPU {sorted(ctx['client_cpus'])}"
        )
    else:
        w("- Pinning: off (fewer than 2 CPUs, or --no-pin)")
    w(
        f"- Method: {config.rounds} rounds; in each, fresh server processes, and every figure "
        f"measured on every server in turn (order reversed on odd rounds: A/B/B/A); "
        f"{config.warmup:g} s warm-up then a {config.duration:g} s window per measurement. "
        f"Idle memory: {config.memory_rounds} round(s), a fresh process per server, "
        f"{config.idle_sessions} sessions. Figures are the median over rounds with the "
        "min–max; ratios are computed per round against raw aiohttp measured in the same "
        "round, then the median and min–max of those ratios are given."
    )
    w(
        f"- Load: echo on {config.echo_connections} connections × {config.echo_window} messages "
        f"in flight each (pipelined, masked frames encoded once, echoes counted by bytes, every "
        f"{config.sample_every}th read decoded and checked frame by frame, exact byte count "
        f"checked at the end); handshakes from {config.handshake_concurrency} concurrent "
        f"connect/upgrade/close loops; HTTP with `wrk -t1 -c{config.http_connections}`."
    )
    # One entry per measurement (a head-to-head measurement has a sample per server).
    timed = [
        s
        for s in samples
        if s.figure != "idle_memory"
        and not (s.figure.startswith((H2H, AA)) and s.server != BASELINE)
    ]
    repeated = sum(1 for s in timed if s.detail.get("attempts", 1) > 1)
    disturbed = sum(1 for s in timed if s.other() > config.max_other)
    w(
        f"- Noisy neighbours: before each measurement the harness waits up to "
        f"{config.quiet_wait:g} s for the machine to be "
        f"idle (under {config.quiet_below:g} core busy), and measures again (up to "
        f"{config.retries} times) when more than {config.max_other:g} core of CPU time went "
        f"to something other than the server and the client, within a {config.noise_budget:g} s "
        f"budget. This run: {ctx['noise_seconds']:.0f} s spent waiting or re-measuring, "
        f"{repeated} of {len(timed)} measurements repeated, {disturbed} still disturbed in "
        "the end" + (' (their "other" column below is high).' if disturbed else ".")
    )
    w("")

    w("## Targets\n")
    scatter = [
        (max(values) / min(values) - 1, figure)
        for figure, table in tables.items()
        if figure != "idle_memory" and len(values := table.values(BASELINE)) > 1 and min(values)
    ]
    quiet = max((s.other() for s in timed), default=0.0)
    scatter_note = ""
    if scatter:
        worst, worst_figure = max(scatter)
        scatter_note = (
            f" In this run raw aiohttp alone varied by up to {worst:.0%} between rounds "
            f"({worst_figure})"
            + (
                f", while CPU use by anything else stayed under {quiet:.2f} core."
                if quiet <= config.max_other
                else f"; other CPU use reached {quiet:.2f} core at times."
            )
        )
    w(
        "Two measurements of each ratio to raw aiohttp, both per round and summarised as "
        "median (min–max). *Sequential*: each server alone on the server CPU, one after "
        "the other, as in the per-figure tables below. *Head-to-head*: aiohttp_spry and raw "
        "aiohttp on the server CPU at the same time, the load split evenly between them, so "
        "the kernel shares the core between the two and anything that slows the machine "
        "(a neighbour, the hypervisor) slows both alike. On a shared virtual machine two "
        "sequential windows seconds apart can differ a lot with nothing else running."
        f"{scatter_note} So the verdicts use the head-to-head ratio (the sequential one "
        "where there is none). The *A/A control* is the same head-to-head measurement of raw "
        "aiohttp against a second raw aiohttp process: its distance from 1.000 is the "
        "method's own scatter, so a ratio closer to its target than that is no clear "
        "verdict either way.\n"
    )
    w("| target | head-to-head | A/A control (raw/raw) | sequential | verdict |")
    w("|---|---|---|---|---|")
    for line in target_lines(tables, pairs, controls):
        w(line)
    w("")

    problems = ctx["problems"]
    w("## Correctness\n")
    if problems:
        w("**Problems were found; the figures below are suspect:**\n")
        for problem in problems:
            w(f"- {problem}")
    else:
        total_verified = sum(
            s.detail.get("verified", 0) for s in samples if s.figure.startswith("echo_")
        )
        w(
            "No errors: every handshake answered 101 with the right `Sec-WebSocket-Accept`, "
            "every echo stream had exactly the expected byte count, every close handshake got "
            f"a 1000 close frame back, and {total_verified:,} sampled echo frames were decoded "
            "and matched the sent payload and opcode. No wrk non-2xx responses or socket errors."
        )
    w("")
    if ctx["responses"]:
        w("`GET /hello` as each server answers it (status line | Content-Type | body):\n")
        for kind, seen in ctx["responses"].items():
            w(f"- {label(kind)}: `{seen}`")
        w("")
    for note in ctx["notes"]:
        w(f"- Note: {note}")
    if ctx["notes"]:
        w("")

    if pairs:
        w(head_to_head_section(pairs, controls))

    for figure, table in tables.items():
        title, unit = FIGURES[figure]
        w(f"## {title}\n")
        if figure == "idle_memory":
            w(memory_table(table, kinds))
        else:
            w(rate_table(table, kinds, unit))
        w("")

    w("## Is the client the bottleneck?\n")
    w(
        "CPU use during each measured window, as a share of one core (median over rounds). "
        "*Client* is the load generator's own process time (the harness for the echo and "
        "handshake figures, wrk for HTTP); *server* the server process's. *Server core* and "
        "*client core* are how busy each pinned CPU was in total (from /proc/stat), and "
        "*other* is all CPU busy time minus the two processes': kernel network work not "
        "charged to a process, plus anything else running on the machine (a noisy "
        "neighbour shows up here). The client has head-room when its share is well under "
        "100% while the server's is near it.\n"
    )
    cpus = sorted({cpu for s in samples for cpu in s.cpu_busy})
    server_cpu = f"cpu{min(ctx['server_cpus'])}" if ctx["server_cpus"] else None
    client_cpu = f"cpu{min(ctx['client_cpus'])}" if ctx["client_cpus"] else None
    w("| figure | server | client CPU | server CPU | server core busy | client core busy | other |")
    w("|---|---|---|---|---|---|---|")
    for figure, table in tables.items():
        if figure == "idle_memory":
            continue
        for kind in kinds:
            row = [
                figure,
                label(kind),
                f"{median(table.field(kind, 'client_share')):.0%}",
                f"{median(table.field(kind, 'server_share')):.0%}",
                f"{median(table.busy(kind, server_cpu)):.0%}" if server_cpu in cpus else "n/a",
                f"{median(table.busy(kind, client_cpu)):.0%}" if client_cpu in cpus else "n/a",
                f"{median(table.other(kind)):.2f} cores",
            ]
            w("| " + " | ".join(row) + " |")
    for figure, table in pairs.items():
        client = table.field(BASELINE, "client_share")
        servers = [
            s.server_share + s.detail.get("peer_server_share", 0.0)
            for s in table.by_server.get(BASELINE, {}).values()
        ]
        row = [
            f"{figure}, head-to-head",
            "raw aiohttp + aiohttp_spry",
            f"{median(client):.0%}",
            f"{median(servers):.0%}",
            f"{median(table.busy(BASELINE, server_cpu)):.0%}" if server_cpu in cpus else "n/a",
            f"{median(table.busy(BASELINE, client_cpu)):.0%}" if client_cpu in cpus else "n/a",
            f"{median(table.other(BASELINE)):.2f} cores",
        ]
        w("| " + " | ".join(row) + " |")
    w("")

    profile = ctx.get("profile") or {}
    if profile:
        w(profile_section(profile))
    if ctx.get("gc"):
        w(gc_section(ctx["gc"]))

    w("## Versions\n")
    w("| package | version |")
    w("|---|---|")
    for name, version in ctx["versions"].items():
        w(f"| {name} | {version} |")
    w("")
    w(
        "Servers: one process each, stdlib asyncio event loop (no uvloop anywhere), access "
        "logs off, WebSocket pings off, no compression negotiated (the client offers no "
        "extension). uvicorn runs with `http=httptools`, `ws=websockets-sansio` (its defaults "
        "when both are installed). The `websockets` server answers `/hello` from "
        "`process_request` and closes the connection after it (it has no keep-alive), so its "
        "HTTP figure includes a TCP connect per request and is not comparable.\n"
    )
    return "\n".join(out)


def verdict(ok: bool, values: Sequence[float], threshold: float, higher_is_better: bool) -> str:
    if not values:
        return "not measured"
    all_ok = (
        all(v >= threshold for v in values)
        if higher_is_better
        else all(v <= threshold for v in values)
    )
    none_ok = (
        all(v < threshold for v in values)
        if higher_is_better
        else all(v > threshold for v in values)
    )
    if ok:
        return "**met**" if all_ok else "**met** (median; some rounds below)"
    return "**missed**" if none_ok else "**missed** (median; some rounds met it)"


def target_lines(
    tables: dict[str, Table], pairs: dict[str, Table], controls: dict[str, Table]
) -> list[str]:
    lines = []
    names = {
        "echo_text_32": "echo msg/s, 32 B text",
        "echo_binary_4096": "echo msg/s, 4 KiB binary",
        "handshakes": "handshakes/s",
        "http": "HTTP req/s through `@spry.route`",
    }
    for figure, name in names.items():
        sequential = tables[figure].paired("spry", BASELINE) if figure in tables else []
        together = pairs[figure].paired("spry", BASELINE) if figure in pairs else []
        control = controls[figure].paired(TWIN, BASELINE) if figure in controls else []
        judged = together or sequential
        if not judged:
            continue
        target = TARGETS[figure]
        m = median(judged)
        lines.append(
            f"| {name}: spry/raw ≥ {target:.2f} | {ratio_cell(together, '.3f')} "
            f"| {ratio_cell(control, '.3f')} | {ratio_cell(sequential, '.3f')} "
            f"| {verdict(m >= target, judged, target, True)} |"
        )
    if "idle_memory" in tables:
        diffs = tables["idle_memory"].paired("spry", BASELINE, how="diff")
        if diffs:
            m = median(diffs)
            limit = TARGETS["idle_memory"]
            lines.append(
                f"| idle memory: spry ≤ raw + 1 KiB per session | | | raw {m:+,.0f} B "
                f"({span(diffs, '+,.0f')}) | {verdict(m <= limit, diffs, limit, False)} |"
            )
    for figure in ("echo_text_32", "echo_binary_4096"):
        if figure not in tables:
            continue
        for peer in ("starlette", "websockets"):
            ratios = tables[figure].paired("spry", peer)
            if not ratios:
                continue
            m = median(ratios)
            lines.append(
                f"| {names[figure]}: spry ahead of {label(peer)} (spry/peer > 1) "
                f"| | | {ratio_cell(ratios, '.2f')} | {verdict(m > 1, ratios, 1.0, True)} |"
            )
    return lines


def ratio_cell(ratios: Sequence[float], fmt: str) -> str:
    if not ratios:
        return "not measured"
    return f"{format(median(ratios), fmt)} ({span(ratios, fmt)})"


def head_to_head_section(pairs: dict[str, Table], controls: dict[str, Table]) -> str:
    out = [
        "## Head-to-head: aiohttp_spry and raw aiohttp on one core at the same time\n",
        "Both servers pinned to the server CPU, loaded at the same time by one client loop "
        "with their connections interleaved (half the connections, slots or wrk "
        "connections each, so the same total load as the sequential figures). Each gets "
        "about half the core; the ratio of their throughputs is the ratio of their costs "
        "per operation, measured under identical conditions at identical moments.\n",
        "The A/A control runs the same measurement with raw aiohttp against a second raw "
        "aiohttp process: ideally 1.000, its spread is how far one head-to-head ratio can "
        "stray by chance on this machine.\n",
        "| figure | raw aiohttp ops/s | aiohttp_spry ops/s | spry/raw (median, min–max) "
        "| per server CPU-second | CPU share raw / spry | A/A control raw/raw |",
        "|---|---|---|---|---|---|---|",
    ]
    for figure, table in pairs.items():
        ratios = table.paired("spry", BASELINE)
        per_cpu = table.per_cpu_ratio("spry", BASELINE)
        control = (
            ratio_cell(controls[figure].paired(TWIN, BASELINE), ".3f")
            if figure in controls
            else "not measured"
        )
        out.append(
            f"| {FIGURES[figure][0]} | {median(table.values(BASELINE)):,.0f} "
            f"| {median(table.values('spry')):,.0f} | {ratio_cell(ratios, '.3f')} "
            f"| {ratio_cell(per_cpu, '.3f')} "
            f"| {median(table.field(BASELINE, 'server_share')):.0%} / "
            f"{median(table.field('spry', 'server_share')):.0%} | {control} |"
        )
    out.append("")
    return "\n".join(out)


def rate_table(table: Table, kinds: list[str], unit: str) -> str:
    rows = [
        f"| server | {unit} median | min–max | ratio to raw (median) | ratio min–max "
        "| server CPU µs per op | per-CPU-second ratio to raw |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind in kinds:
        values = table.values(kind)
        if not values:
            continue
        ratios = table.paired(kind, BASELINE)
        per_op = [s.server_share / s.value * 1e6 for s in table.by_server[kind].values() if s.value]
        rows.append(
            f"| {label(kind)} | {median(values):,.0f} | {span(values, ',.0f')} "
            f"| {median(ratios):.3f} | {span(ratios, '.3f')} | {median(per_op):.1f} "
            f"| {median(table.per_cpu_ratio(kind, BASELINE)):.3f} |"
        )
    rows.append("")
    rows.append(
        "*Server CPU µs per op* is the server process's CPU time in the window divided by the "
        "operations completed: the cost per message (or connection, or request) independent "
        "of whether the server core was saturated."
    )
    return "\n".join(rows)


def memory_table(table: Table, kinds: list[str]) -> str:
    rows = [
        "| server | bytes/session median | min–max | ratio to raw | minus raw (bytes) "
        "| RSS before → with sessions (last round) |",
        "|---|---|---|---|---|---|",
    ]
    for kind in kinds:
        values = table.values(kind)
        if not values:
            continue
        ratios = table.paired(kind, BASELINE)
        diffs = table.paired(kind, BASELINE, how="diff")
        last = table.by_server[kind][max(table.by_server[kind])].detail
        rows.append(
            f"| {label(kind)} | {median(values):,.0f} | {span(values, ',.0f')} "
            f"| {median(ratios):.3f} | {median(diffs):+,.0f} ({span(diffs, '+,.0f')}) "
            f"| {last['rss_before'] / 2**20:.1f} MiB → {last['rss_after'] / 2**20:.1f} MiB "
            f"({last['sessions']} sessions) |"
        )
    rows.append("")
    rows.append(
        "Each session did one 32-byte echo, then sat idle; RSS read from /proc/PID/statm "
        "after 1 s, minus RSS after a warm-up of 100 sessions opened and closed."
    )
    return "\n".join(rows)


WORKLOADS = {
    "echo_text_32": "the 32-byte text echo load (the per-message path)",
    "handshakes": "the handshake load (the per-connection path: upgrade, session, close)",
}


def profile_section(profile: dict[str, dict[str, Any]]) -> str:
    out: list[str] = []
    w = out.append
    w("## CPU profile of the Spry paths\n")
    w(
        "py-spy attached to the server process (`py-spy record --function`, 250 Hz), one "
        "fresh process per run. Only samples where the server was busy count (idle time in "
        "`epoll` is not sampled). *Self* is time in the function itself, including the C "
        "code it calls directly (a `socket.send` shows up in `_SelectorSocketTransport.write`); "
        "frames are `function (file:first line)`. The collapsed stacks are saved as "
        "`profile-<workload>-<server>.collapsed.txt` next to this file (feed them to "
        "`flamegraph.pl`).\n"
    )
    for workload, by_kind in profile.items():
        spry = by_kind.get("spry")
        raw = by_kind.get(BASELINE)
        w(f"### Under {WORKLOADS.get(workload, workload)}\n")
        if spry:
            p = spry["profile"]
            w(
                f"aiohttp_spry: {p.samples} busy samples at {spry['rate']:,.0f} ops/s. "
                f"**Self time in aiohttp_spry's own frames: {p.share(p.spry_self):.1%}** of "
                "the busy samples (the rest is aiohttp, asyncio and CPython, which raw aiohttp "
                "pays too).\n"
            )
            w("Top frames by self time:\n")
            w(frame_table(p.self_time, p))
            w("\naiohttp_spry's own frames (self time):\n")
            w(frame_table(p.spry_self_frames, p))
            w("")
        if raw:
            p = raw["profile"]
            w(
                f"Raw aiohttp under the same load, for comparison: {p.samples} busy samples at "
                f"{raw['rate']:,.0f} ops/s. Top frames by self time:\n"
            )
            w(frame_table(p.self_time[:10], p))
            w("")
    return "\n".join(out)


def gc_section(gc_stats: dict[str, dict[str, dict[str, float]]]) -> str:
    out = [
        "## Cyclic garbage\n",
        "Objects that only Python's cyclic garbage collector could free (reference cycles), "
        "and the time it spent, per operation, counted with `gc.callbacks` in a separate, "
        "untimed run of each server (`python -m bench.servers --gc-stats FILE`). Objects "
        "left in cycles stay in memory until a collection runs, and the collections cost CPU "
        "that the profiles spread over whatever frame happened to allocate.\n",
        "| load | server | objects freed by the GC per op | GC time per op | GC runs (full) |",
        "|---|---|---|---|---|",
    ]
    for workload, by_kind in gc_stats.items():
        for kind, v in by_kind.items():
            out.append(
                f"| {workload} | {label(kind)} | {v['collected_per_op']:.2f} "
                f"| {v['gc_us_per_op']:.1f} µs | {v['runs']:.0f} ({v['full_runs']:.0f}) |"
            )
    out.append("")
    return "\n".join(out)


def frame_table(frames: list[tuple[str, int]], profile: Any) -> str:
    rows = ["| frame (function (file:first line)) | samples | share |", "|---|---|---|"]
    for frame, count in frames:
        rows.append(f"| `{frame}` | {count} | {profile.share(count):.1%} |")
    return "\n".join(rows)
