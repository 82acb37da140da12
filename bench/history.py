"""``python -m bench.history``: what history costs, and how fast recovery is.

Three measurements, each against its own control in the same run:

1. **Fan-out with history on vs off** (memory broker, then Redis): one server
   process, N subscribers on each of three topics: ``off-a`` and ``off-b``
   (no history: the A/A control) and ``h:on`` (history). A round is the bursts
   ``off-a, h:on, off-b, h:on, off-a`` (``h:on, off-a, off-b, off-a, h:on`` on odd
   rounds), each ``spry.publish`` of K messages that every subscriber must receive
   exactly, in order. Figures per burst: deliveries per second until the last
   subscriber had the last message, and deliveries per second of *server CPU*
   (the client may be the slower side; CPU is the cost). Ratios on/off and
   off-b/off-a are taken within each round; the summary is their median.
   Target: on ≥ 0.9× off.
2. **Cross-process latency with history**: a ``redis-server``, two processes
   with ``RedisBroker`` and S subscribers each; process A publishes stamped
   messages at a steady rate, alternating a topic with history and one without;
   p50/p99 of publish → delivery at A's (local) and B's (remote) subscribers.
3. **Reconnect storm**: M members of ``h:storm`` (memory and Redis) leave, the
   topic moves on by B messages, and all M reconnect at once with ``since=``:
   time until every one has its B missed messages (each checked), and the server
   CPU it took.

``--quick`` runs every part with tiny sizes (a correctness check, not a
measurement). The exit status is 1 when any check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import attrs

from bench.system import Proc, raise_fd_limit, versions
from tests.support.procs import HOST
from tests.support.redisproc import RedisProcess, redis_server_path

HERE = Path(__file__).resolve().parent
SERVER = "bench.servers.history_server"
OFF_A, OFF_B, ON = "off-a", "off-b", "h:on"
IO_TIMEOUT = 60.0


@attrs.define
class Config:
    subscribers: int = 1000
    messages: int = 100
    rounds: int = 5
    redis: bool = True
    latency_subscribers: int = 500
    latency_rate: float = 20.0
    latency_seconds: float = 10.0
    storm_members: int = 5000
    storm_behind: int = 100
    output: Path = HERE / "RESULTS-history.md"
    json_output: Path = HERE / "results-history.json"


QUICK: dict[str, Any] = dict(
    subscribers=20, messages=10, rounds=2, latency_subscribers=10, latency_rate=50.0,
    latency_seconds=0.5, storm_members=30, storm_behind=10,
)  # fmt: skip


# -- clients ------------------------------------------------------------------------------


@attrs.define
class Subscriber:
    """One WebSocket subscriber: every message it got, as (run, seq, offset, latency_ns)."""

    ws: aiohttp.ClientWebSocketResponse[bool]
    got: list[tuple[int, int, int | None, int | None]] = attrs.field(factory=list)
    first: dict[str, Any] | None = None
    reader: asyncio.Task[None] | None = None

    async def read(self) -> None:
        async for message in self.ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                continue
            now = time.time_ns()
            data = json.loads(message.data)
            if "r" not in data:
                self.first = data
                continue
            stamp = data.get("t")
            self.got.append(
                (data["r"], data["s"], data.get("offset"), now - stamp if stamp else None)
            )

    def of_run(self, run: int) -> list[tuple[int, int, int | None, int | None]]:
        return [entry for entry in self.got if entry[0] == run]


async def open_subscribers(
    http: aiohttp.ClientSession, port: int, topic: str, count: int, since: str | None = None
) -> list[Subscriber]:
    query = f"?since={since}" if since else ""

    async def one() -> Subscriber:
        ws = await http.ws_connect(f"http://{HOST}:{port}/sub/{topic}{query}", max_msg_size=0)
        subscriber = Subscriber(ws)
        subscriber.reader = asyncio.get_running_loop().create_task(subscriber.read())
        return subscriber

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def close_all(subscribers: list[Subscriber]) -> None:
    async def one(subscriber: Subscriber) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(subscriber.ws.close(), 10.0)

    await asyncio.gather(*(one(s) for s in subscribers))


class Control:
    """The server's control WebSocket: one JSON command, one JSON answer."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse[bool]) -> None:
        self.ws = ws

    @classmethod
    async def open(cls, http: aiohttp.ClientSession, port: int) -> Control:
        return cls(await http.ws_connect(f"http://{HOST}:{port}/control"))

    async def ask(self, op: str, **fields: Any) -> dict[str, Any]:
        await self.ws.send_str(json.dumps({"op": op, **fields}))
        answer: dict[str, Any] = json.loads((await self.ws.receive(timeout=IO_TIMEOUT * 10)).data)
        if "error" in answer:
            raise RuntimeError(f"server answered {op}: {answer['error']}")
        return answer


async def until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.002)


def check_run(
    subscribers: list[Subscriber], run: int, count: int, problems: list[str], label: str
) -> None:
    """Every subscriber has exactly ``count`` messages of ``run``, in order, contiguous offsets."""
    for index, subscriber in enumerate(subscribers):
        got = subscriber.of_run(run)
        seqs = [seq for _, seq, _, _ in got]
        if seqs != list(range(count)):
            problems.append(f"{label}: subscriber {index} got {len(seqs)} of {count}, not in order")
            return
        offsets = [offset for _, _, offset, _ in got]
        if offsets[0] is not None and offsets != list(range(offsets[0], offsets[0] + count)):
            problems.append(f"{label}: subscriber {index}: offsets not contiguous")
            return


# -- servers ------------------------------------------------------------------------------


@contextlib.contextmanager
def redis_server() -> Iterator[RedisProcess]:
    path = redis_server_path()
    if path is None:
        raise RuntimeError("redis-server not found (apt-get install -y redis-server)")
    redis = RedisProcess(path)
    redis.start()
    try:
        yield redis
    finally:
        redis.cleanup()


@contextlib.contextmanager
def server(log_dir: Path, broker: str, name: str) -> Iterator[Proc]:
    proc = Proc(SERVER, f"history server ({name})", None, log_dir, "--broker", broker, name=name)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


# -- 1. fan-out with history on vs off -----------------------------------------------------


def round_order(round_no: int) -> list[str]:
    return [OFF_A, ON, OFF_B, ON, OFF_A] if round_no % 2 == 0 else [ON, OFF_A, OFF_B, OFF_A, ON]


async def fanout(
    config: Config, broker: str, label: str, log_dir: Path, problems: list[str]
) -> dict[str, Any]:
    n, k = config.subscribers, config.messages
    bursts: list[dict[str, Any]] = []
    with server(log_dir, broker, f"fanout-{label}") as proc:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            control = await Control.open(http, proc.port)
            groups = {t: await open_subscribers(http, proc.port, t, n) for t in (OFF_A, OFF_B, ON)}
            for topic in groups:
                await until_count(control, topic, n)
            run = 0
            for round_no in range(config.rounds + 1):  # round 0 warms up, unrecorded
                for topic in round_order(round_no):
                    run += 1
                    cpu0, t0 = proc.cpu(), time.perf_counter()
                    answer = await control.ask("burst", topic=topic, run=run, count=k)
                    subs = groups[topic]
                    await until(
                        lambda: all(len(s.of_run(run)) >= k for s in subs),  # noqa: B023
                        IO_TIMEOUT,
                        f"{label} burst {run} on {topic}",
                    )
                    wall, cpu = time.perf_counter() - t0, proc.cpu() - cpu0
                    check_run(subs, run, k, problems, f"{label} {topic} burst {run}")
                    others = [s for t, g in groups.items() if t != topic for s in g]
                    if any(s.of_run(run) for s in others):
                        problems.append(f"{label}: burst {run} reached another topic")
                    if round_no:
                        bursts.append(
                            {
                                "round": round_no,
                                "topic": topic,
                                "wall": wall,
                                "server_cpu": cpu,
                                "publish_loop": answer["seconds"],
                                "deliveries": n * k,
                            }
                        )
            for group in groups.values():
                await close_all(group)
    return {"broker": label, "bursts": bursts, "summary": summarise_fanout(bursts)}


async def until_count(control: Control, topic: str, count: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (await control.ask("count", topic=topic))["subscribers"] >= count:
            return
        await asyncio.sleep(0.02)
    raise RuntimeError(f"{count} subscribers never joined {topic} within {timeout}s")


def summarise_fanout(bursts: list[dict[str, Any]]) -> dict[str, Any]:
    ratios: dict[str, list[float]] = {"on/off wall": [], "on/off cpu": [], "A/A wall": []}
    ratios["A/A cpu"] = []
    for round_no in sorted({b["round"] for b in bursts}):
        of = [b for b in bursts if b["round"] == round_no]

        def rate(topic: str, key: str) -> float:
            rates = [b["deliveries"] / b[key] for b in of if b["topic"] == topic and b[key] > 0]  # noqa: B023
            return statistics.fmean(rates) if rates else math.nan

        ratios["on/off wall"].append(rate(ON, "wall") / rate(OFF_A, "wall"))
        ratios["on/off cpu"].append(rate(ON, "server_cpu") / rate(OFF_A, "server_cpu"))
        ratios["A/A wall"].append(rate(OFF_B, "wall") / rate(OFF_A, "wall"))
        ratios["A/A cpu"].append(rate(OFF_B, "server_cpu") / rate(OFF_A, "server_cpu"))
    summary: dict[str, Any] = {name: median(values) for name, values in ratios.items()}
    for topic in (OFF_A, ON):
        walls = [b["deliveries"] / b["wall"] for b in bursts if b["topic"] == topic]
        summary[f"{topic} deliveries/s"] = median(walls)
    return summary


def median(values: list[float]) -> float:
    clean = [v for v in values if not math.isnan(v)]
    return statistics.median(clean) if clean else math.nan


# -- 2. cross-process latency with history ---------------------------------------------------


def percentile(values: list[int], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))] / 1e6


async def latency(config: Config, log_dir: Path, problems: list[str]) -> dict[str, Any]:
    s = config.latency_subscribers
    count = max(2, int(config.latency_rate * config.latency_seconds))
    results: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(redis_server())
        a = stack.enter_context(server(log_dir, redis.url, "lat-a"))
        b = stack.enter_context(server(log_dir, redis.url, "lat-b"))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            control = await Control.open(http, a.port)
            control_b = await Control.open(http, b.port)
            topics = {"history": "h:lat", "no history": "lat"}
            subs = {
                (kind, side): await open_subscribers(http, proc.port, topic, s)
                for kind, topic in topics.items()
                for side, proc in (("local", a), ("remote", b))
            }
            for topic in topics.values():
                await until_count(control, topic, s)
                await until_count(control_b, topic, s)
            await asyncio.sleep(0.5)  # both processes subscribed in Redis
            order = [*topics.items(), *reversed(topics.items())]
            for run, (kind, topic) in enumerate(order, start=1):
                await control.ask(
                    "stream", topic=topic, run=run, count=count, rate=config.latency_rate
                )
                for side in ("local", "remote"):
                    group = subs[(kind, side)]
                    await until(
                        lambda: all(len(x.of_run(run)) >= count for x in group),  # noqa: B023
                        IO_TIMEOUT,
                        f"latency {kind} {side} run {run}",
                    )
                    check_run(group, run, count, problems, f"latency {kind} {side}")
            for (kind, side), group in subs.items():
                samples = [lat for x in group for _, _, _, lat in x.got if lat is not None]
                results[f"{kind} {side}"] = {
                    "deliveries": len(samples),
                    "p50_ms": percentile(samples, 0.5),
                    "p99_ms": percentile(samples, 0.99),
                }
            for group in subs.values():
                await close_all(group)
    return results


# -- 3. reconnect storm --------------------------------------------------------------------


async def storm(
    config: Config, broker: str, label: str, log_dir: Path, problems: list[str]
) -> dict[str, Any]:
    m, behind = config.storm_members, config.storm_behind
    with server(log_dir, broker, f"storm-{label}") as proc:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            control = await Control.open(http, proc.port)
            members = await open_subscribers(http, proc.port, "h:storm", m)
            # Thousands of joins on Redis each read the history: allow them time.
            await until_count(control, "h:storm", m, timeout=180.0)
            since = (await control.ask("position", topic="h:storm"))["position"]
            await close_all(members)
            await until_count_at_most(control, "h:storm", 0)
            await control.ask("burst", topic="h:storm", run=1, count=behind)
            cpu0, t0 = proc.cpu(), time.perf_counter()
            back = await open_subscribers(http, proc.port, "h:storm", m, since=since)
            await until(
                lambda: all(len(x.of_run(1)) >= behind for x in back),
                IO_TIMEOUT * 5,
                f"storm {label}: every member recovered",
            )
            wall, cpu = time.perf_counter() - t0, proc.cpu() - cpu0
            check_run(back, 1, behind, problems, f"storm {label}")
            not_recovered = [x for x in back if not (x.first and x.first.get("recovered"))]
            if not_recovered:
                problems.append(f"storm {label}: {len(not_recovered)} not recovered")
            await close_all(back)
    return {"broker": label, "members": m, "behind": behind, "seconds": wall, "server_cpu": cpu}


async def until_count_at_most(control: Control, topic: str, count: int) -> None:
    for _ in range(1000):
        if (await control.ask("count", topic=topic))["subscribers"] <= count:
            return
        await asyncio.sleep(0.02)
    raise RuntimeError(f"{topic} kept more than {count} subscribers")


# -- the run -------------------------------------------------------------------------------


async def run(config: Config, command: str) -> dict[str, Any]:
    problems: list[str] = []
    raise_fd_limit()
    data: dict[str, Any] = {
        "command": command,
        "config": attrs.asdict(config, value_serializer=_plain),
    }
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
        log_dir = Path(tmp)
        data["fanout"] = [await fanout(config, "memory", "memory", log_dir, problems)]
        if config.redis:
            with redis_server() as redis:
                data["fanout"].append(await fanout(config, redis.url, "redis", log_dir, problems))
            data["latency"] = await latency(config, log_dir, problems)
        data["storm"] = [await storm(config, "memory", "memory", log_dir, problems)]
        if config.redis:
            with redis_server() as redis:
                data["storm"].append(await storm(config, redis.url, "redis", log_dir, problems))
    data["problems"] = problems
    data["versions"] = versions("redis")
    return data


def _plain(instance: object, attribute: object, value: object) -> object:
    return str(value) if isinstance(value, Path) else value


def render(data: dict[str, Any]) -> str:
    lines = [
        "# aiohttp_spry history benchmark results",
        "",
        f"`{data['command']}`",
        "",
    ]
    if data["problems"]:
        lines += ["**Problems:**", "", *[f"- {p}" for p in data["problems"]], ""]
    config = data["config"]
    lines += [
        f"## Fan-out with history on vs off ({config['subscribers']} subscribers per topic, "
        f"{config['messages']} messages per burst, median of {config['rounds']} rounds)",
        "",
        "| broker | on/off deliveries/s | on/off per server CPU s | A/A deliveries/s | "
        "A/A per CPU s | off deliveries/s | on deliveries/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for part in data["fanout"]:
        s = part["summary"]
        lines.append(
            f"| {part['broker']} | {s['on/off wall']:.3f} | {s['on/off cpu']:.3f} | "
            f"{s['A/A wall']:.3f} | {s['A/A cpu']:.3f} | {s[f'{OFF_A} deliveries/s']:,.0f} | "
            f"{s[f'{ON} deliveries/s']:,.0f} |"
        )
    if "latency" in data:
        lines += [
            "",
            f"## Cross-process publish → delivery, 2 processes × {config['latency_subscribers']} "
            f"subscribers, {config['latency_rate']:g} msg/s",
            "",
            "| topic | subscribers | deliveries | p50 ms | p99 ms |",
            "|---|---|---|---|---|",
        ]
        for name, row in data["latency"].items():
            kind, side = name.rsplit(" ", 1)
            lines.append(
                f"| {kind} | {side} | {row['deliveries']} | {row['p50_ms']:.2f} | "
                f"{row['p99_ms']:.2f} |"
            )
    lines += [
        "",
        f"## Reconnect storm ({config['storm_members']} members at once, each "
        f"{config['storm_behind']} messages behind)",
        "",
        "| broker | seconds until all recovered | server CPU s |",
        "|---|---|---|",
    ]
    for part in data["storm"]:
        lines.append(f"| {part['broker']} | {part['seconds']:.3f} | {part['server_cpu']:.3f} |")
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in data["versions"].items()), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.history", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a correctness check")
    parser.add_argument("--no-redis", action="store_true", help="the memory broker only")
    parser.add_argument("--subscribers", type=int)
    parser.add_argument("--messages", type=int)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--storm-members", type=int)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    config = Config(**QUICK) if args.quick else Config()
    for name in ("subscribers", "messages", "rounds", "storm_members"):
        if getattr(args, name) is not None:
            setattr(config, name, getattr(args, name))
    config.redis = not args.no_redis
    if args.output is not None:
        config.output, config.json_output = args.output, args.output.with_suffix(".json")
    elif args.quick:
        quick_dir = Path(tempfile.mkdtemp(prefix="bench-history-quick-"))
        config.output = quick_dir / "RESULTS-history.md"
        config.json_output = quick_dir / "results-history.json"
    command = "python -m bench.history " + " ".join(argv if argv is not None else sys.argv[1:])
    data = asyncio.run(run(config, command.strip()))
    config.output.write_text(render(data))
    config.json_output.write_text(json.dumps(data, indent=1, default=str))
    print(render(data))
    print(f"written: {config.output}")
    return 1 if data["problems"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
