"""``python -m bench.fanout``: fan-out throughput, and latency through Redis.

Throughput, for each N: one server process holds the raw aiohttp floor and aiohttp_spry
(N subscribers each), python-socketio another; a round is raw, spry, socketio, spry, raw
bursts (mirrored on odd rounds), the other process paused during each. Latency: a
``redis-server``, two aiohttp_spry processes with ``RedisBroker``, A publishing stamped
messages at a steady rate to A's and B's subscribers.
"""

from __future__ import annotations

import functools
import math
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from bench import harness
from bench.fanout import render
from bench.fanout.client import SIO, WS, Control, FanoutClient, Latencies
from bench.fanout.messages import RAW_PATH, REDIS_PATH, SIO_PATH, SPRY_PATH, TOPIC
from bench.harness import Option
from bench.system import CpuTimes, Proc, pin, process_cpu, versions
from tests.support.redisproc import RedisProcess, redis_server_path

CONTENDERS = ("raw", "spry", "socketio")
PATHS = {"raw": RAW_PATH, "spry": SPRY_PATH, "socketio": SIO_PATH}
REDIS_CHANNEL = "aiohttp_spry:" + TOPIC  # RedisBroker's default channel prefix + topic


@attrs.define
class Config(harness.Settings):
    output: Path = harness.HERE / "RESULTS-fanout.md"
    json_output: Path = harness.HERE / "results-fanout.json"
    sizes: tuple[int, ...] = (1000, 5000)
    #: Subscriber-messages per raw / spry burst (k = ⌈deliveries / N⌉ messages), and per
    #: python-socketio burst (about ten times slower per delivery).
    deliveries: int = 100_000
    sio_deliveries: int = 20_000
    warmup_deliveries: int = 20_000  # one unmeasured burst per set before the rounds
    sample_every: int = 50
    contenders: tuple[str, ...] = CONTENDERS
    redis: bool = True
    redis_subscribers: int = 1000
    redis_rate: float = 10.0
    redis_seconds: float = 20.0
    redis_warmup: float = 1.0
    busy_poll: bool = True
    redis_retries: int = 1
    quiet_wait: float = 10.0
    noise_budget: float = 90.0


QUICK: dict[str, Any] = dict(
    sizes=(50,), rounds=2, deliveries=1000, sio_deliveries=250, warmup_deliveries=250,
    sample_every=1, redis_subscribers=50, redis_rate=50.0, redis_seconds=1.0, redis_warmup=0.2,
    quiet_wait=1.0, retries=0, redis_retries=0, noise_budget=5.0,
)  # fmt: skip


def messages_for(deliveries: int, subscribers: int) -> int:
    return max(2, math.ceil(deliveries / subscribers))


def round_order(contenders: tuple[str, ...], round_no: int) -> list[str]:
    """raw spry socketio spry raw (spry raw socketio raw spry on odd rounds): a linear
    drift of the machine cancels out of the spry/raw ratio within each round."""
    pair = [name for name in ("raw", "spry") if name in contenders][:: -1 if round_no % 2 else 1]
    return [*pair, *[name for name in contenders if name not in pair], *reversed(pair)]


def percentile(ordered: list[int], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return math.nan
    return float(ordered[min(len(ordered), max(1, math.ceil(q / 100 * len(ordered)))) - 1])


class Fanout(harness.Harness):
    config: Config

    def __init__(self, config: Config, log: harness.Log) -> None:
        super().__init__(config, log, "spry-fanout-")
        self.config = config
        self.bursts: list[dict[str, Any]] = []
        self.facts: dict[str, Any] = {}
        self.burst_id = 0

    def proc(self, module: str, *args: str, name: str = "") -> Proc:
        return Proc(
            f"bench.servers.{module}",
            name or module,
            self.server_cpus,
            self.workdir,
            *args,
            name=name,
        )

    def fanout_size(self, n: int) -> None:
        c = self.config
        local, sio = self.proc("fanout_local"), self.proc("fanout_socketio")
        procs = {"raw": local, "spry": local, "socketio": sio}
        client = FanoutClient()
        controls: dict[Proc, Control] = {}
        try:
            for proc in {procs[name] for name in c.contenders}:
                proc.start()
                controls[proc] = Control(proc.port)
            t0 = time.perf_counter()
            groups = {
                name: client.open_group(
                    name,
                    SIO if name == "socketio" else WS,
                    procs[name].port,
                    PATHS[name],
                    n,
                    c.sample_every,
                )
                for name in c.contenders
            }
            opened = time.perf_counter() - t0
            counts = self.wait_subscribed(client, controls, n)
            rss = {p.name: p.rss() for p in controls}
            self.log(f"N={n}: {len(groups) * n} subscribers open in {opened:.1f} s; RSS {rss}")
            self.facts[f"N={n}"] = {"open_seconds": opened, "counts": counts, "rss": rss}

            def burst(name: str, k: int) -> dict[str, Any]:
                self.burst_id += 1
                # The other server is paused: idle python-socketio still pings its N clients
                # (every 25 s); a burst is far shorter than Engine.IO's 20 s ping timeout.
                paused = [p for p in controls if p is not procs[name]]
                for p in paused:
                    p.pause(True)
                try:
                    control = controls[procs[name]]
                    return client.burst(groups[name], control, self.burst_id, k, procs[name].cpu)
                finally:
                    for p in paused:
                        p.pause(False)

            for name in c.contenders:  # warm-up: code paths, allocator, TCP buffers
                self.check(n, "warm-up", burst(name, messages_for(c.warmup_deliveries, n)))
            for round_no in range(c.rounds):
                for name in round_order(c.contenders, round_no):
                    k = messages_for(c.sio_deliveries if name == "socketio" else c.deliveries, n)
                    result, attempts, idle = self.until_quiet(
                        name,
                        functools.partial(burst, name, k),
                        lambda b: 0.0 if b["errors"] else b["other"],
                        client.service,
                    )
                    self.check(n, f"round {round_no + 1}", result)
                    self.record(round_no, result, attempts, idle)
        finally:
            for control in controls.values():
                control.sock.close()
            try:
                client.close()
            finally:
                local.stop()
                sio.stop()
        self.problems += [f"N={n}: {problem}" for problem in client.totals.errors]
        if client.pings:
            self.notes.append(f"N={n}: {client.pings} Engine.IO pings answered")

    def wait_subscribed(
        self, client: FanoutClient, controls: dict[Proc, Control], n: int
    ) -> dict[str, Any]:
        """Until every server counts all N of each of its sets; its fd limit must hold them."""
        deadline = time.monotonic() + 30
        while True:
            counts = {proc.name: control.ask("count") for proc, control in controls.items()}
            sets = {
                k: v for answer in counts.values() for k, v in answer.items() if k in CONTENDERS
            }
            if all(v >= n for v in sets.values()):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"subscribers never all registered: {counts}")
            client.service(0.05)
        for name, answer in counts.items():
            held = sum(1 for key in answer if key in CONTENDERS) * n
            if answer["fds"]["soft"] < held + 64:
                self.problems.append(f"N={n}: {name}'s RLIMIT_NOFILE {answer['fds']} < {held}")
        return counts

    def check(self, n: int, when: str, burst: dict[str, Any]) -> None:
        where = f"N={n}, {when}, {burst['contender']}"
        self.problems += [f"{where}: {error}" for error in burst["errors"]]
        if burst["verified"] == 0:
            self.problems.append(f"{where}: no frame was decoded")

    def record(self, round_no: int, b: dict[str, Any], attempts: int, idle: float) -> None:
        self.bursts.append({**b, "round": round_no, "attempts": attempts, "idle_before": idle})
        self.log(
            f"  N={b['subscribers']} round {round_no + 1} {b['contender']:<9} "
            f"{b['deliveries'] / b['seconds']:>9,.0f} msg/s  {b['seconds'] * 1000:7.1f} ms  "
            f"client {b['client_cpu'] / b['seconds']:4.0%}  "
            f"server {b['server_cpu'] / b['seconds']:4.0%}  other {b['other']:.2f}"
        )

    def redis_latency(self) -> dict[str, Any] | None:
        c = self.config
        executable = redis_server_path()
        if not c.redis or executable is None:
            if c.redis:
                self.notes.append(
                    "Redis benchmark skipped: no redis-server (apt-get install redis)"
                )
            return None
        half = c.redis_subscribers // 2
        count = max(2, round(c.redis_rate * c.redis_seconds))
        warmup = min(count - 1, round(c.redis_rate * c.redis_warmup))
        redis = RedisProcess(executable)
        client = FanoutClient()
        procs: dict[str, Proc] = {}
        controls: list[Control] = []
        attempts: list[dict[str, Any]] = []
        try:
            redis.start()
            assert redis.proc is not None
            pin(redis.proc.pid, self.server_cpus)
            for side in ("A", "B"):
                procs[side] = self.proc(
                    "fanout_redis", "--redis", redis.url, name=f"fanout_redis_{side}"
                )
                procs[side].start()
            groups = [
                client.open_group(s, WS, p.port, REDIS_PATH, half, c.sample_every)
                for s, p in procs.items()
            ]
            controls = [Control(p.port) for p in procs.values()]
            deadline = time.monotonic() + 30
            while True:
                counts = [control.ask("count") for control in controls]
                numsub = redis.numsub(REDIS_CHANNEL)
                if all(x["subscribers"] == half and x["redis"] for x in counts) and numsub == 2:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Redis setup incomplete: {counts}, NUMSUB {numsub}")
                time.sleep(0.05)
            version = subprocess.run(
                [executable, "--version"], capture_output=True, text=True, check=False
            ).stdout.strip()
            self.log(
                f"redis: {half} subscribers on A and B, {count} messages at {c.redis_rate:g}/s"
            )

            def stream() -> dict[str, Any]:
                """One timed stream, with the CPU use of every process involved."""
                cpu0 = {side: p.cpu() for side, p in procs.items()}
                cpu0["redis"] = process_cpu(redis.proc.pid)  # type: ignore[union-attr]
                busy0 = CpuTimes.read()
                result = client.latency(
                    groups, controls[0], len(attempts) + 1, count, c.redis_rate, warmup, c.busy_poll
                )
                busy = CpuTimes.read().busy_since(busy0)
                cpu = {side: p.cpu() - cpu0[side] for side, p in procs.items()}
                cpu["redis"] = process_cpu(redis.proc.pid) - cpu0["redis"]  # type: ignore[union-attr]
                cpu["client"] = result.client_cpu
                other = sum(busy.values()) - sum(cpu.values()) / result.seconds
                attempts.append(
                    {
                        "run": len(attempts) + 1,
                        "result": result,
                        "cpu": cpu,
                        "busy": busy,
                        "other": other,
                    }
                )
                return attempts[-1]

            self.until_quiet(
                "latency stream",
                stream,
                lambda a: 0.0 if a["result"].errors else a["other"],
                client.service,
                c.redis_retries,
            )
        finally:
            for control in controls:
                control.sock.close()
            try:
                client.close()
            finally:
                for proc in procs.values():
                    proc.stop()
                redis.cleanup()
        for attempt in attempts:
            result = attempt["result"]
            self.problems += [f"redis latency, stream {attempt['run']}: {e}" for e in result.errors]
            if result.reply.get("delivered") != half * count:
                self.problems.append(
                    f"redis latency, stream {attempt['run']}: A delivered "
                    f"{result.reply.get('delivered')} locally, expected {half * count}"
                )
        self.problems += [f"redis latency: {error}" for error in client.totals.errors]
        # The least disturbed stream is the one reported; all are in the JSON.
        best = min(attempts, key=lambda x: (bool(x["result"].errors), x["other"]))
        result = best["result"]
        return {
            **summarise_latency(result, half * (count - warmup)),
            "subscribers_per_process": half,
            "messages": count,
            "warmup_messages": warmup,
            "redis_version": version,
            "numsub": numsub,
            "rate": c.redis_rate,
            "run": best["run"],
            "cpu_seconds": best["cpu"],
            "cpu_busy": best["busy"],
            "other": best["other"],
            "publisher": result.reply,
            "attempts": [
                {
                    "run": x["run"],
                    "other": x["other"],
                    "errors": list(x["result"].errors),
                    **summarise_latency(x["result"], 0)["sides"],
                }
                for x in attempts
            ],
        }

    def run(self) -> dict[str, Any]:
        for n in self.config.sizes:
            self.fanout_size(n)
        redis = self.redis_latency()
        found = versions("websockets", "py-spy", "python-socketio", "python-engineio", "redis")
        if redis:
            found["redis-server"] = redis["redis_version"]
        return {
            "facts": self.facts,
            "bursts": self.bursts,
            "summary": summarise(self.bursts, self.config.contenders),
            "redis": redis,
            "versions": found,
        }


def summarise_latency(result: Latencies, expected: int) -> dict[str, Any]:
    """Percentiles (ms) per side, of arrival, observed, first and last delivery."""
    sides = {}
    for side, values in result.arrival.items():
        ordered = sorted(values)
        seen, firsts, lasts = (
            sorted(result.observed[side]),
            sorted(result.first[side]),
            sorted(result.last[side]),
        )
        sides[side] = {
            "deliveries": len(ordered),
            "expected": expected,
            **{
                f"p{q:g}_ms".replace(".", ""): percentile(ordered, q) / 1e6
                for q in (50, 90, 99, 99.9)
            },
            "max_ms": percentile(ordered, 100) / 1e6,
            "min_ms": ordered[0] / 1e6 if ordered else math.nan,
            "observed_p50_ms": percentile(seen, 50) / 1e6,
            "observed_p99_ms": percentile(seen, 99) / 1e6,
            "first_p50_ms": percentile(firsts, 50) / 1e6,
            "first_p99_ms": percentile(firsts, 99) / 1e6,
            "last_p50_ms": percentile(lasts, 50) / 1e6,
            "last_p99_ms": percentile(lasts, 99) / 1e6,
        }
    return {
        "seconds": result.seconds,
        "client_cpu": result.client_cpu,
        "verified": result.verified,
        "shared_reads": result.shared_reads,
        "client_busy_share": 1 - result.idle_polls / result.polls if result.polls else 0.0,
        "sides": sides,
    }


def summarise(bursts: list[dict[str, Any]], contenders: tuple[str, ...]) -> dict[str, Any]:
    """Per N: for each contender, each figure per round (its bursts pooled: total deliveries
    over total time); for each pair, the per-round ratios."""
    out: dict[str, Any] = {}
    for n in sorted({b["subscribers"] for b in bursts}):
        by: dict[str, dict[int, dict[str, float]]] = {name: {} for name in contenders}
        for name in contenders:
            for r in sorted({b["round"] for b in bursts}):
                group = [
                    b
                    for b in bursts
                    if (b["subscribers"], b["round"], b["contender"]) == (n, r, name)
                ]
                if not group:
                    continue
                seconds = sum(b["seconds"] for b in group)
                deliveries = sum(b["deliveries"] for b in group)
                server_cpu = sum(b["server_cpu"] for b in group)
                client_cpu = sum(b["client_cpu"] for b in group)
                loop = sum(b["server_loop_seconds"] for b in group)
                by[name][r] = {
                    "rate": deliveries / seconds,
                    "ms": seconds / len(group) * 1000,
                    "us_per_delivery": server_cpu / deliveries * 1e6,
                    "per_cpu": deliveries / server_cpu if server_cpu else math.nan,
                    "client_share": client_cpu / seconds,
                    "server_share": server_cpu / seconds,
                    "other": sum(b["other"] * b["seconds"] for b in group) / seconds,
                    "frames_per_read": deliveries / max(1, sum(b["reads"] for b in group)),
                    "loop_rate": deliveries / loop,
                    # From the end of the server's loop to the client's last byte (with the
                    # trigger's latency): the client's share of the measured time.
                    "tail_ms": (seconds - loop) / len(group) * 1000,
                    "client_us_per_delivery": client_cpu / deliveries * 1e6,
                    "messages": group[0]["messages"],
                    "deliveries": deliveries // len(group),
                    "bursts": len(group),
                }
        table = {
            name: {
                key: [row[key] for row in rounds.values()] for key in next(iter(rounds.values()))
            }
            for name, rounds in by.items()
            if rounds
        }
        ratios = {}
        for top, bottom in (("spry", "raw"), ("spry", "socketio"), ("raw", "socketio")):
            common = sorted(by.get(top, {}).keys() & by.get(bottom, {}).keys())
            if common:
                ratios[f"{top}/{bottom}"] = {
                    key: [by[top][r][key] / by[bottom][r][key] for r in common]
                    for key in ("rate", "loop_rate", "per_cpu")
                }
        out[str(n)] = {
            "table": table,
            "ratios": ratios,
            "rounds": len({b["round"] for b in bursts}),
        }
    return out


OPTIONS = [
    Option("--rounds", "rounds of alternating bursts per N", int),
    Option(
        "--sizes",
        "comma-separated subscriber counts (default 1000,5000)",
        lambda text: tuple(map(int, harness.comma_list(text))),
    ),
    Option("--deliveries", "subscriber-messages per raw/spry burst", int),
    Option("--sio-deliveries", "the same for python-socketio", int),
    Option("--redis-seconds", "length of the latency stream", float),
    Option("--redis-rate", "messages per second in the stream", float),
    Option("--no-socketio", "raw and spry only"),
    Option("--no-redis", "skip the Redis latency part"),
    Option("--no-fanout", "the Redis latency part only"),
    Option("--no-busy-poll", "the latency client sleeps in epoll_wait instead of polling"),
    Option("--output", "where to write the Markdown results", Path),
    Option("--json", "where to write the JSON results", Path),
]


def run(config: Config, command: str, log: harness.Log = harness.printer) -> dict[str, Any]:
    """Run everything and write the results; what was written to the JSON file."""
    bench = Fanout(config, log)
    return harness.run(bench, command, bench.run, render.render, config.json_output)


def main(argv: list[str] | None = None, log: Callable[[str], None] = harness.printer) -> int:
    config, args, command = harness.parse(
        argv,
        "python -m bench.fanout",
        "Fan-out throughput (raw aiohttp loop, aiohttp_spry, "
        "python-socketio) and latency through Redis; writes bench/RESULTS-fanout.md.",
        Config,
        QUICK,
        OPTIONS,
    )
    if args.quick and args.output is None:  # a smoke run must not overwrite the results
        config.output = Path(tempfile.gettempdir()) / "RESULTS-fanout-quick.md"
    if args.json is not None:
        config.json_output = args.json
    elif args.output is not None or args.quick:
        config.json_output = config.output.with_name(config.output.stem.lower() + ".json")
    if args.no_fanout:
        config.sizes = ()
    if args.no_socketio:
        config.contenders = ("raw", "spry")
    return 1 if run(config, command, log)["problems"] else 0
