"""RESULTS-fanout.md from the JSON the fan-out run writes."""

from __future__ import annotations

import math
from typing import Any

LABELS = {
    "raw": "raw aiohttp loop (floor)",
    "spry": "aiohttp_spry `spry.publish`",
    "socketio": "python-socketio `emit(room=)`",
}
TARGETS = (
    # (ratio, minimum, strict, wording)
    ("spry/raw", 0.95, False, "spry/raw ≥ 0.95"),
    ("spry/socketio", 1.0, True, "spry/socketio > 1"),
)


def fmt(value: float, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def span(s: dict[str, float], digits: int = 3, scale: float = 1.0) -> str:
    return f"{fmt(s['min'] * scale, digits)}–{fmt(s['max'] * scale, digits)}"


def whole(value: float) -> str:
    return f"{value:,.0f}"


def pct(value: float) -> str:
    return f"{value:.0%}"


def verdict(s: dict[str, float], minimum: float, strict: bool) -> str:
    def ok(x: float) -> bool:
        return x > minimum if strict else x >= minimum

    if ok(s["median"]):
        return "**met**" if ok(s["min"]) else "**met** (median; some rounds below)"
    return "**missed**" if not ok(s["max"]) else "**missed** (median; some rounds met it)"


def render(data: dict[str, Any]) -> str:
    config = data["config"]
    summary = data["summary"]
    lines: list[str] = []
    add = lines.append
    sizes = list(summary)
    add("# aiohttp_spry fan-out benchmark results")
    add("")
    add(f"- Command: `{data['command']}` (from the repository root)")
    add(f"- Date: {data['date']}; wall time {data['wall_seconds'] / 60:.1f} min")
    add(f"- aiohttp_spry revision: {data['revision']}")
    machine = data["machine"]
    add(
        f"- Machine: {machine['nproc']} CPUs ({machine['CPU model']}), {machine['memory']}, "
        f"Linux {machine['kernel']}; load average before the run "
        f"{', '.join(f'{x:.2f}' for x in data['load_before'])}"
    )
    add(
        f"- Pinning: servers (and redis-server) on CPU {data['server_cpus']}, the client on CPU "
        f"{data['client_cpus']}"
    )
    nofile = data["facts"].get("client_nofile", {})
    server_nofile = next(
        (
            answer["fds"]
            for facts in data["facts"].values()
            if isinstance(facts, dict) and "counts" in facts
            for answer in facts["counts"].values()
        ),
        None,
    )
    add(
        f"- RLIMIT_NOFILE raised to the hard limit: client {nofile.get('soft')}/"
        f"{nofile.get('hard')}"
        + (
            f", servers {server_nofile['soft']}/{server_nofile['hard']} (soft/hard)"
            if server_nofile
            else ""
        )
    )
    add(
        f"- Noisy neighbours: before each burst the harness waited (at most "
        f"{config['quiet_wait']:g} s) for the machine to be idle (under "
        f"{config['quiet_below']} core busy), and measured again (up to {config['retries']} "
        f"times) a burst during which more than {config['max_other']} core went to something "
        f"other than the target server and the client; this run spent "
        f"{data['noise_seconds']:.0f} s waiting or re-measuring, "
        f"{sum(1 for b in data['bursts'] if b['attempts'] > 1)} of {len(data['bursts'])} "
        f"bursts repeated, {sum(1 for b in data['bursts'] if b['other'] > config['max_other'])} "
        "still disturbed in the end."
    )
    add("")
    add("## Method")
    add("")
    add(
        "**Fan-out throughput.** One 64-byte text message delivered to N open subscriber "
        "WebSockets; the figure is delivered messages per second (subscriber-messages "
        "received by the client per second). For each N, fresh server processes: one process "
        "holds both the raw aiohttp floor (`GET /raw/sub`, plain `web.WebSocketResponse` "
        "sessions in a set; a burst runs `for ws in subscribers: await ws.send_str(msg)` per "
        "message) and aiohttp_spry (`GET /spry/sub`, a `@spry.route` session that called "
        '`await ws.subscribe("t")`; a burst runs `await spry.publish(app, "t", msg)` per '
        "message), N subscribers each, so both are measured in the same process under the "
        "same conditions, seconds apart. python-socketio runs in its own process "
        '(`socketio.AsyncServer(async_mode="aiohttp")`, every client joins room `r` in its '
        '`connect` handler; a burst runs `await sio.emit("m", msg, room="r")` per message); '
        "its clients speak Engine.IO v4 over WebSocket directly (`0{...}` open packet, `40`, "
        '`40{...}`; messages arrive as `42["m","..."]`; pings answered).'
    )
    add("")
    add(
        f"A burst is k messages published back to back by the server, triggered by one JSON "
        f"command on a control WebSocket (the messages are built before the server's clock "
        f"starts); k = ⌈{config['deliveries']:,} / N⌉ for raw and spry and "
        f"⌈{config['sio_deliveries']:,} / N⌉ for python-socketio (about ten times slower "
        "per delivery). The burst is timed on the client from writing the trigger to "
        "receiving the last byte of the last subscriber. A round is five bursts: raw, spry, "
        "socketio, spry, raw (spry, raw, socketio, raw, spry on odd rounds), so a linear drift "
        "of the machine cancels out of the spry/raw ratio within each round; a contender's "
        "figure for a round pools its bursts (total deliveries over total time). One "
        f"unmeasured warm-up burst per contender precedes the rounds. {config['rounds']} "
        "rounds per N; ratios are taken within a round, then the median and min–max over "
        "rounds are given. During each burst the other server process is paused (SIGSTOP, "
        "then SIGCONT): idle, python-socketio still pings each of its N clients every 25 s, "
        "which at N = 5,000 took 0.1–0.3 of the server core from the raw and spry bursts; "
        "the pauses last one burst, far less than Engine.IO's 20 s ping timeout."
    )
    add("")
    add(
        "The client is one process with every subscriber socket (3N) on a bare `epoll` loop "
        "(`bench/fanout/client.py`, in the style of `bench/client.py`): non-blocking sockets, "
        "handshakes by hand, deliveries counted by bytes for raw and spry (every frame has a "
        "known size) and frame by frame for Socket.IO (pings interleave). "
        + (
            "Before each burst it sets `SO_RCVLOWAT` on every target socket to the burst's size "
            "less its last few frames (at most 8), then to what is missing, so the kernel wakes "
            "it twice per subscriber per burst, the second time when that subscriber's last "
            "byte has arrived: two `recv()` per subscriber per burst, and the moment each "
            "subscriber completes is seen as it happens (a `recv()` costs this client about "
            "20 µs here, more than a fast server spends per delivery, so reading each frame as "
            "it comes would make the client the bottleneck). "
            if config.get("lowat", False)
            else f"Between passes over the ready sockets it sleeps {config['coalesce'] * 1000:g} "
            f"ms so one `recv()` carries several frames, and only "
            f"{config['tail_coalesce'] * 1000:g} ms once all but the last two messages have "
            "arrived everywhere. "
        )
        + "For raw and spry, whose publishing is synchronous, the server's publish loop (timed "
        "on the server, from the command to the end of the loop) is nearly the whole burst; "
        "its rate is shown too. "
        "*Server CPU µs per delivery* is the server process's CPU time (user + system, "
        "/proc) during the burst divided by the deliveries; the *per CPU-second* ratio is the "
        "ratio of deliveries per server CPU-second, what the throughput ratio would be if "
        "each server had had its core to itself throughout."
    )
    if data.get("redis"):
        r = data["redis"]
        add("")
        add(
            f"**Latency through Redis.** A `redis-server` ({r['redis_version'].split(' ')[2]}) "
            f"started by the benchmark on a free port, two aiohttp_spry processes A and B with "
            f"`Spry(app, broker=RedisBroker(url))`, {r['subscribers_per_process']} subscribers "
            f'on each (`ws.subscribe("t")`). A publishes {r["messages"]} messages at '
            f"{r['rate']:g}/s on an absolute schedule, each carrying `time.time_ns()` taken "
            "just before its `spry.publish`. The latency of a delivery is the kernel's receive "
            "timestamp of its frame on the client socket (`SO_TIMESTAMPNS`, taken when the "
            "segment is queued to the socket; CLOCK_REALTIME, the same clock for every process) "
            "minus that publish time, so the client's own speed does not enter it; the client "
            "decodes every frame (sequence numbers checked) and busy-polls, so no delivery has "
            "to wake it. *Observed*: the same, with the client's clock after the `recv()` "
            "instead (it includes the client's queue: one `recv()` costs it about 25 µs "
            "here). A's subscribers are served in-process (local), B's through Redis: "
            "`publish` writes to the local subscribers first, then hands the message to the "
            "broker. redis-server, A and B share the one server core, so B cannot start its "
            "fan-out before A has finished its own. *First* / *last* delivery: per message, "
            "the latency of the process's earliest and latest subscriber. The first "
            f"{r['warmup_messages']} messages are a warm-up, not counted."
        )
    add("")

    # Targets
    add("## Targets")
    add("")
    add(
        "| target | N | throughput ratio, median (min–max over rounds) | per server "
        "CPU-second | verdict |"
    )
    add("|---|---|---|---|---|")
    for key, minimum, strict, wording in TARGETS:
        for n in sizes:
            ratio = summary[n]["ratios"].get(key)
            if ratio is None:
                continue
            add(
                f"| fan-out msg/s: {wording} | {int(n):,} | {fmt(ratio['rate']['median'])} "
                f"({span(ratio['rate'])}) | {fmt(ratio['per_cpu']['median'])} "
                f"({span(ratio['per_cpu'])}) | {verdict(ratio['rate'], minimum, strict)} |"
            )
    add("")
    add(
        'Verdicts use the throughput ratio. "met (median; some rounds below)" means the '
        "median meets the target but not every round did: look at the spread."
    )
    add("")

    # Correctness
    add("## Correctness")
    add("")
    if data["problems"]:
        add("**Problems:**")
        add("")
        for problem in data["problems"]:
            add(f"- {problem}")
    else:
        verified = sum(b["verified"] for b in data["bursts"])
        every = config["sample_every"]
        sample = (
            "all of them" if every == 1 else f"every {every}th subscriber and the last of each set"
        )
        deliveries = sum(b["deliveries"] for b in data["bursts"])
        add(
            f"No errors. After every burst each subscriber of the target set had received "
            f"exactly k messages ({deliveries:,} deliveries in the measured bursts, counted "
            "exactly: bytes for raw and spry, frames for Socket.IO), no subscriber of another "
            "set received anything, and every server's own count of deliveries matched "
            f"N × k. On a sample of subscribers ({sample}) every frame was decoded: "
            f"{verified:,} frames matched the "
            "message sent, in order (opcode, FIN, unmasked, payload). Every subscriber closed "
            "with a 1000 close frame answered by the server's 1000 close frame and FIN."
        )
        if data.get("redis"):
            r = data["redis"]
            add("")
            add(
                f"Redis: every one of the {2 * r['subscribers_per_process']} subscribers "
                f"received all {r['messages']} messages, in order, exactly once "
                f"({r['verified']:,} frames decoded, sequence numbers and payload checked); "
                f"`PUBSUB NUMSUB` showed both processes subscribed ({r['numsub']}) before the "
                "stream started."
            )
    for note in data["notes"]:
        add("")
        add(f"Note: {note}")
    add("")

    # Per N tables
    for n in sizes:
        s = summary[n]
        table = s["table"]
        add(f"## Fan-out to {int(n):,} subscribers")
        add("")
        facts = data["facts"].get(f"N={n}", {})
        parts = []
        for name, row in table.items():
            parts.append(
                f"{LABELS[name].split(' `')[0]} {row['messages']} messages "
                f"({row['deliveries']:,} deliveries), {row['bursts_per_round']} per round"
            )
        add(
            f"Per burst: {'; '.join(parts)}. {s['rounds']} rounds. Opening the "
            f"{len(table) * int(n):,} subscribers took {facts.get('open_seconds', 0):.1f} s."
        )
        add("")
        add(
            "| contender | delivered msg/s, median | min–max | ratio to raw (median, "
            "min–max) | server CPU µs per delivery | per-CPU-second ratio to raw | "
            "trigger → last delivery, ms | server's publish loop, deliveries/s (ratio to raw) | "
            "client CPU | server CPU |"
        )
        add("|---|---|---|---|---|---|---|---|---|---|")
        raw_rate = None
        for name, row in table.items():
            loop = whole(row["loop_rate"]["median"])
            if name == "socketio":
                loop = "n/a (`emit` only queues)"
            elif name != "raw" and f"{name}/raw" in s["ratios"]:
                loop += f" ({fmt(s['ratios'][f'{name}/raw']['loop_rate']['median'])})"
            if name == "raw":
                ratio = "1.000"
                per_cpu = "1.000"
                raw_rate = row
            else:
                key = f"{name}/raw" if name != "socketio" else None
                if key and key in s["ratios"]:
                    ratio = (
                        f"{fmt(s['ratios'][key]['rate']['median'])} "
                        f"({span(s['ratios'][key]['rate'])})"
                    )
                    per_cpu = fmt(s["ratios"][key]["per_cpu"]["median"])
                elif "raw/socketio" in s["ratios"]:
                    inv = s["ratios"]["raw/socketio"]
                    ratio = (
                        f"{fmt(1 / inv['rate']['median'])} "
                        f"({fmt(1 / inv['rate']['max'])}–{fmt(1 / inv['rate']['min'])})"
                    )
                    per_cpu = fmt(1 / inv["per_cpu"]["median"])
                else:
                    ratio = per_cpu = "n/a"
            add(
                f"| {LABELS[name]} | {whole(row['rate']['median'])} | "
                f"{whole(row['rate']['min'])}–{whole(row['rate']['max'])} | {ratio} | "
                f"{fmt(row['us_per_delivery']['median'], 2)} | {per_cpu} | "
                f"{fmt(row['ms']['median'], 1)} ({span(row['ms'], 1)}) | {loop} | "
                f"{pct(row['client_share']['median'])} | {pct(row['server_share']['median'])} |"
            )
        del raw_rate
        if "spry/socketio" in s["ratios"]:
            r = s["ratios"]["spry/socketio"]
            add("")
            add(
                f"spry/socketio: {fmt(r['rate']['median'], 2)} ({span(r['rate'], 2)}) in "
                f"throughput, {fmt(r['per_cpu']['median'], 2)} ({span(r['per_cpu'], 2)}) per "
                "server CPU-second."
            )
        add("")

    # Client bottleneck
    add("## Is the client the bottleneck?")
    add("")
    add(
        "Client and server CPU time during each burst, as a share of one core (median over "
        "the measured bursts; max in brackets). The server is the bottleneck when its share "
        "is near 100% and the client's is below it. The client only reads what the kernel "
        "already holds for it (each socket's receive buffer takes a whole burst), so a slower "
        "client could only delay the end of a burst, never slow the server down; the last "
        "column is that delay (with the trigger's own latency): the time from the end of the "
        "server's publish loop to the client's last byte."
    )
    add("")
    add(
        "| N | contender | client CPU | server CPU | other (cores) | frames per `recv()` | "
        "client CPU µs per delivery | last delivery after the server's loop ended, ms |"
    )
    add("|---|---|---|---|---|---|---|---|")
    for n in sizes:
        for name, row in summary[n]["table"].items():
            add(
                f"| {int(n):,} | {LABELS[name]} | {pct(row['client_share']['median'])} "
                f"(max {pct(row['client_share']['max'])}) | "
                f"{pct(row['server_share']['median'])} | "
                f"{fmt(row['other']['median'], 2)} | {fmt(row['frames_per_read']['median'], 1)} | "
                f"{fmt(row['client_us_per_delivery']['median'], 1)} | "
                + (
                    "n/a |"
                    if name == "socketio"
                    else f"{fmt(row['tail_ms']['median'], 1)} ({span(row['tail_ms'], 1)}) |"
                )
            )
    add("")

    # Redis
    if data.get("redis"):
        r = data["redis"]
        add("## Latency through Redis")
        add("")
        add(
            f"{r['subscribers_per_process']} subscribers on process A (the publisher) and "
            f"{r['subscribers_per_process']} on process B, {r['messages']} messages at "
            f"{r['rate']:g}/s ({r['messages'] - r['warmup_messages']} counted). Milliseconds, "
            "publish → kernel receive timestamp on the client."
        )
        add("")
        add(
            "| subscribers | deliveries | p50 | p90 | p99 | p99.9 | max | first delivery "
            "p50 / p99 | last delivery p50 / p99 | observed at recv() p50 / p99 |"
        )
        add("|---|---|---|---|---|---|---|---|---|---|")
        names = {"A": "A, local (same process)", "B": "B, other process, via Redis"}
        for side in ("A", "B"):
            x = r["sides"][side]
            add(
                f"| {names[side]} | {x['deliveries']:,} | **{fmt(x['p50_ms'], 2)}** | "
                f"{fmt(x['p90_ms'], 2)} | **{fmt(x['p99_ms'], 2)}** | {fmt(x['p999_ms'], 2)} | "
                f"{fmt(x['max_ms'], 2)} | {fmt(x['first_p50_ms'], 2)} / "
                f"{fmt(x['first_p99_ms'], 2)} | {fmt(x['last_p50_ms'], 2)} / "
                f"{fmt(x['last_p99_ms'], 2)} | {fmt(x['observed_p50_ms'], 2)} / "
                f"{fmt(x['observed_p99_ms'], 2)} |"
            )
        cpu = r["cpu_seconds"]
        a, b = r["sides"]["A"], r["sides"]["B"]
        publisher = r["publisher"]
        add("")
        add(
            f"The Redis hop itself, B's first delivery minus A's last (medians): "
            f"{fmt(b['first_p50_ms'] - a['last_p50_ms'], 2)} ms. A's `spry.publish` call "
            f"(its synchronous local fan-out to {r['subscribers_per_process']}) took "
            f"{fmt(publisher.get('publish_ms_median', float('nan')), 2)} ms (median), "
            f"{fmt(publisher.get('publish_ms_max', float('nan')), 2)} ms at most; the "
            f"publisher's latest tick was {publisher.get('late_max', 0) * 1000:.1f} ms late."
        )
        add("")
        add(
            f"CPU during the stream ({r['seconds']:.1f} s): A {cpu['A'] / r['seconds']:.0%}, "
            f"B {cpu['B'] / r['seconds']:.0%}, redis-server {cpu['redis'] / r['seconds']:.0%} "
            f"of the server core; {fmt(r['other'], 2)} core of other CPU use (neighbours). "
            f"The client busy-polls its core by design; {r['shared_reads']:,} deliveries were "
            "read together with a later one (they would carry the later timestamp; 0 means "
            "every delivery has its own)."
        )
        if len(r.get("attempts", [])) > 1:
            add("")
            add(
                f"The stream was run {len(r['attempts'])} times because neighbours disturbed "
                f"it; the least disturbed (stream {r['run']}) is shown. All: "
                + "; ".join(
                    f"stream {x['run']}: other {x['other']:.2f} core, A p50/p99 "
                    f"{fmt(x['A']['p50_ms'], 2)}/{fmt(x['A']['p99_ms'], 2)}, B p50/p99 "
                    f"{fmt(x['B']['p50_ms'], 2)}/{fmt(x['B']['p99_ms'], 2)} ms"
                    for x in r["attempts"]
                )
                + "."
            )
        add("")

    # Versions
    add("## Versions")
    add("")
    for name, version in data["versions"].items():
        add(f"- {name}: {version}")
    if data.get("redis"):
        add(f"- redis-server: {data['redis']['redis_version']}")
    add("")
    add("Every burst's figures (and the latency percentiles) are in `bench/results-fanout.json`.")
    add("")
    return "\n".join(lines)
