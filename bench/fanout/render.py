"""bench/RESULTS-fanout.md from the fan-out run's data (the method is in bench/README.md)."""

from __future__ import annotations

from typing import Any

from bench.report import (
    cell,
    fmt,
    median,
    noise_line,
    preamble,
    problems_or,
    span,
    table,
    verdict,
    versions,
)

LABELS = {
    "raw": "raw aiohttp loop (floor)",
    "spry": "aiohttp_spry `spry.publish`",
    "socketio": "python-socketio `emit(room=)`",
}
TARGETS = (
    ("spry/raw", "spry/raw ≥ 0.95", lambda x: x >= 0.95),
    ("spry/socketio", "spry/socketio > 1", lambda x: x > 1),
)


def render(data: dict[str, Any]) -> str:
    c, summary, bursts = data["config"], data["summary"], data["bursts"]
    w = preamble(
        "aiohttp_spry fan-out benchmark results",
        data,
        "servers (and redis-server) on CPU {server_cpus}, the client on CPU {client_cpus}",
    )
    servers_fds = [a["fds"] for f in data["facts"].values() for a in f["counts"].values()]
    soft, hard = data["client_nofile"]
    w.append(
        f"- RLIMIT_NOFILE raised to the hard limit: client {soft}/{hard}"
        + (f", servers {servers_fds[0]['soft']}/{servers_fds[0]['hard']}" if servers_fds else "")
        + " (soft/hard)"
    )
    disturbed = sum(1 for b in bursts if b["other"] > c.max_other)
    repeated = sum(1 for b in bursts if b["attempts"] > 1)
    w.append(noise_line(c, data, "burst", repeated, disturbed, len(bursts)))
    w.append(
        f"- Method (bench/README.md): k = ⌈{c.deliveries:,} / N⌉ messages per raw and spry burst, "
        f"⌈{c.sio_deliveries:,} / N⌉ per python-socketio burst; {c.rounds} rounds per N of five "
        "bursts (raw spry socketio spry raw, mirrored on odd rounds) after one warm-up burst "
        "each, a round's bursts of a contender pooled; ratios per round, then median (min–max). "
        "*Per server CPU-second*: the ratio of deliveries per server CPU-second.\n"
    )
    w.append("## Targets\n")
    rows = [
        f"fan-out msg/s: {wording} | {int(n):,} | {cell(ratio['rate'])} | {cell(ratio['per_cpu'])} "
        f"| {verdict(ratio['rate'], ok)}"
        for key, wording, ok in TARGETS
        for n in summary
        if (ratio := summary[n]["ratios"].get(key))
    ]
    header = "target | N | throughput ratio, median (min–max over rounds) | per server CPU-second"
    w.append(table(header + " | verdict", rows))
    every = c.sample_every
    sample = "all of them" if every == 1 else f"every {every}th subscriber and the last of each set"
    fine = (
        "No errors. After every burst each subscriber of the target set had received exactly k "
        f"messages ({sum(b['deliveries'] for b in bursts):,} deliveries in the measured bursts, "
        "counted exactly: bytes for raw and spry, frames for Socket.IO), no subscriber of another "
        "set received anything, and every server's own count matched N × k. On a sample of "
        f"subscribers ({sample}) every frame was decoded: {sum(b['verified'] for b in bursts):,} "
        "frames matched the message sent, in order. Every subscriber closed with a 1000 close "
        "frame answered by the server's 1000 close frame and FIN."
    )
    if r := data["redis"]:
        fine += (
            f"\n\nRedis: every one of the {2 * r['subscribers_per_process']} subscribers received "
            f"all {r['messages']} messages, in order, exactly once ({r['verified']:,} frames "
            f"decoded); `PUBSUB NUMSUB` showed both processes subscribed ({r['numsub']})."
        )
    w += problems_or(data, fine)
    for n, s in summary.items():
        w.append(f"\n## Fan-out to {int(n):,} subscribers\n")
        per_burst = "; ".join(
            f"{LABELS[name].split(' `')[0]} {row['messages'][0]} messages "
            f"({row['deliveries'][0]:,} deliveries), {row['bursts'][0]} per round"
            for name, row in s["table"].items()
        )
        opened = data["facts"][f"N={n}"]["open_seconds"]
        w.append(
            f"Per burst: {per_burst}. {s['rounds']} rounds. Opening the "
            f"{len(s['table']) * int(n):,} subscribers took {opened:.1f} s.\n"
        )
        rows = []
        for name, row in s["table"].items():
            to_raw = s["ratios"].get(f"{name}/raw")
            if name == "raw":
                ratio, per_cpu, loop = "1.000", "1.000", f"{median(row['loop_rate']):,.0f}"
            elif to_raw:
                ratio, per_cpu = cell(to_raw["rate"]), fmt(median(to_raw["per_cpu"]))
                loop = f"{median(row['loop_rate']):,.0f} ({fmt(median(to_raw['loop_rate']))})"
            else:
                inverse = s["ratios"].get("raw/socketio", {"rate": [], "per_cpu": []})
                ratio = cell([1 / x for x in inverse["rate"]])
                per_cpu, loop = fmt(1 / median(inverse["per_cpu"])), "n/a (`emit` only queues)"
            rows.append(
                f"{LABELS[name]} | {median(row['rate']):,.0f} | {span(row['rate'], ',.0f')} "
                f"| {ratio} | {fmt(median(row['us_per_delivery']), '.2f')} | {per_cpu} "
                f"| {cell(row['ms'], '.1f')} | {loop} | {median(row['client_share']):.0%} "
                f"| {median(row['server_share']):.0%}"
            )
        header = "contender | delivered msg/s, median | min–max | ratio to raw (median, min–max) "
        header += "| server CPU µs per delivery | per-CPU-second ratio to raw "
        header += "| trigger → last delivery, ms | server's publish loop, deliveries/s (ratio to "
        w.append(table(header + "raw) | client CPU | server CPU", rows))
        if ratio := s["ratios"].get("spry/socketio"):
            w.append(
                f"spry/socketio: {cell(ratio['rate'], '.2f')} in throughput, "
                f"{cell(ratio['per_cpu'], '.2f')} per server CPU-second."
            )
    w.append("\n## Is the client the bottleneck?\n")
    w.append(
        "CPU time during each burst as a share of one core (median over rounds; max in "
        "brackets). The client reads only what the kernel already holds, so a slow client could "
        "only delay a burst's end: the last column, from the end of the server's publish loop "
        "to the client's last byte.\n"
    )
    rows = [
        f"{int(n):,} | {LABELS[name]} | {median(row['client_share']):.0%} "
        f"(max {max(row['client_share']):.0%}) | {median(row['server_share']):.0%} "
        f"| {fmt(median(row['other']), '.2f')} | {fmt(median(row['frames_per_read']), '.1f')} "
        f"| {fmt(median(row['client_us_per_delivery']), '.1f')} "
        f"| {'n/a' if name == 'socketio' else cell(row['tail_ms'], '.1f')}"
        for n, s in summary.items()
        for name, row in s["table"].items()
    ]
    header = "N | contender | client CPU | server CPU | other (cores) | frames per `recv()` "
    header += "| client CPU µs per delivery | last delivery after the server's loop ended, ms"
    w.append(table(header, rows))
    if r:
        w += redis_section(r)
    w.append(versions(data["versions"]))
    w.append(
        "Every burst's figures (and the latency percentiles) are in `bench/results-fanout.json`.\n"
    )
    return "\n".join(w)


def redis_section(r: dict[str, Any]) -> list[str]:
    half, seconds = r["subscribers_per_process"], r["seconds"]
    w = [
        "## Latency through Redis\n",
        f"{half} subscribers on process A (the publisher) and {half} on process B, "
        f"{r['messages']} messages at {r['rate']:g}/s ({r['messages'] - r['warmup_messages']} "
        "counted). Milliseconds, publish → kernel receive timestamp on the client "
        "(`SO_TIMESTAMPNS`); *observed*: at the client's clock after `recv()`.\n",
    ]
    names = {"A": "A, local (same process)", "B": "B, other process, via Redis"}
    rows = []
    for side, name in names.items():
        x = {key: fmt(value, ".2f") for key, value in r["sides"][side].items()}
        pairs = [f"{x[f'{k}_p50_ms']} / {x[f'{k}_p99_ms']}" for k in ("first", "last", "observed")]
        rows.append(
            f"{name} | {r['sides'][side]['deliveries']:,} | **{x['p50_ms']}** | {x['p90_ms']} "
            f"| **{x['p99_ms']}** | {x['p999_ms']} | {x['max_ms']} | {' | '.join(pairs)}"
        )
    header = "subscribers | deliveries | p50 | p90 | p99 | p99.9 | max | first delivery p50 / p99 "
    w.append(table(header + "| last delivery p50 / p99 | observed at recv() p50 / p99", rows))
    a, b, p, cpu = r["sides"]["A"], r["sides"]["B"], r["publisher"], r["cpu_seconds"]
    w.append(
        f"The Redis hop itself, B's first delivery minus A's last (medians): "
        f"{fmt(b['first_p50_ms'] - a['last_p50_ms'], '.2f')} ms. A's `spry.publish` call (its "
        f"synchronous local fan-out to {half}) took {fmt(p['publish_ms_median'], '.2f')} ms "
        f"(median), {fmt(p['publish_ms_max'], '.2f')} ms at most; the publisher's latest tick was "
        f"{p['late_max'] * 1000:.1f} ms late.\n"
    )
    w.append(
        f"CPU during the stream ({seconds:.1f} s): A {cpu['A'] / seconds:.0%}, B "
        f"{cpu['B'] / seconds:.0%}, redis-server {cpu['redis'] / seconds:.0%} of the server core; "
        f"{fmt(r['other'], '.2f')} core of other CPU use. The client busy-polls its core by "
        f"design; {r['shared_reads']:,} deliveries were read together with a later one (they "
        "would carry the later timestamp).\n"
    )
    if len(r["attempts"]) > 1:
        w.append(
            f"The stream ran {len(r['attempts'])} times (neighbours disturbed it); the least "
            f"disturbed (stream {r['run']}) is shown. All: "
            + "; ".join(
                f"stream {x['run']}: other {x['other']:.2f} core, A p50/p99 "
                f"{fmt(x['A']['p50_ms'], '.2f')}/{fmt(x['A']['p99_ms'], '.2f')}, B p50/p99 "
                f"{fmt(x['B']['p50_ms'], '.2f')}/{fmt(x['B']['p99_ms'], '.2f')} ms"
                for x in r["attempts"]
            )
            + ".\n"
        )
    return w
