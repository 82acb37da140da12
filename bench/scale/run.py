"""``python -m bench.scale``: how far one process and one broker go.

Part A, sessions per process (aiohttp_spry and raw aiohttp in turn, in one run): one
server process on 127.0.0.2 holding as many idle WebSocket sessions as the open-file
limit allows, opened by several client processes (each from a loopback address of its
own); its RSS before and after (memory per session), then a few publishes of one
message to every session: the time from the publish request until each session
received it (p50/p99/max over the sessions).

Part B, throughput across processes: a broker (one ``redis-server``; a 3-master Redis
Cluster when the cluster broker is available), P aiohttp_spry processes on 127.0.0.2,
127.0.0.3, ... as separate hosts, each with one session per topic (T topics) from a
client process of its own, and publishers in every process sending to random topics at
full speed for a fixed time: deliveries per second, and the publish → receive latency
(local and remote subscribers) p50/p99.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import math
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import attrs

from bench import harness
from bench.harness import Option
from bench.report import with_section
from bench.scale import render
from bench.system import Proc, process_cpu, versions
from tests.support.procs import REPO_ROOT, stop_process, subprocess_env
from tests.support.redisproc import RedisProcess, redis_server_path

SERVER = "bench.servers.scale_server"
#: Part A's server address, and the clients' own addresses (one per client process).
SERVER_HOST = "127.0.0.2"
CLIENT_SOURCES = "127.0.1.{}"
#: Part B runs several servers, clients and the broker: the kernel spreads them.
ALL_CPUS = set(os.sched_getaffinity(0))
#: Descriptors a server keeps for itself: the listening socket, epoll, stdio, its log...
HEADROOM = 100
CLUSTER_NEEDED = (
    "needs the cluster broker: broker_from_url does not know redis+cluster:// in this "
    "checkout (it is being written on main); merge it, then run "
    "python -m bench.scale --no-part-a --brokers cluster"
)
#: The cluster's masters, each on a "host" of its own.
CLUSTER_HOSTS = ("127.0.0.11", "127.0.0.12", "127.0.0.13")


@attrs.define
class Config(harness.Settings):
    output: Path = harness.HERE / "RESULTS-scale.md"
    json_output: Path = harness.HERE / "results-scale.json"
    rounds: int = 2  # part A: (spry, raw) then (raw, spry)
    #: Part A: sessions per server (None: the open-file limit less HEADROOM).
    sessions: int | None = None
    clients: int = 4
    concurrency: int = 64  # handshakes in flight per client process
    ramp_timeout: float = 300.0
    publishes: int = 3
    #: Part B.
    processes: int = 3
    topics: int = 1000
    publishers: int = 4
    seconds: float = 10.0
    warmup: float = 2.0
    brokers: tuple[str, ...] = ("redis", "cluster")
    broker_url: str | None = None
    #: Where the figures' section goes too (``None``: nowhere else).
    results_md: Path | None = harness.HERE / "RESULTS.md"
    settle: float = 1.0  # seconds to let memory and subscriptions settle
    part_a: bool = True
    part_b: bool = True
    quiet_wait: float = 10.0
    noise_budget: float = 60.0


QUICK: dict[str, Any] = dict(
    rounds=1, sessions=300, clients=2, ramp_timeout=30.0, publishes=2, processes=2, topics=50,
    publishers=2, seconds=1.0, warmup=0.3, quiet_wait=0.0, noise_budget=0.0,
    results_md=None, settle=0.3,
)  # fmt: skip


# -- processes ------------------------------------------------------------------------------


class Client:
    """One ``python -m bench.scale.client`` process: JSON lines out, commands in."""

    def __init__(self, workdir: Path, name: str, cpus: set[int] | None, *args: str) -> None:
        self.name = name
        self.output = workdir / f"{name}.json"
        self.log_path = workdir / f"{name}.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bench.scale.client", *args, "--output", str(self.output)],
                cwd=REPO_ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=subprocess_env(),
            )
        if cpus is not None:
            os.sched_setaffinity(self.proc.pid, cpus)
        self.lines: queue.Queue[str | None] = queue.Queue()
        assert self.proc.stdout is not None
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()

    def _read(self, stream: IO[bytes]) -> None:
        for line in stream:
            self.lines.put(line.decode())
        self.lines.put(None)

    def answer(self, timeout: float) -> dict[str, Any]:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"{self.name}: no answer within {timeout} s") from None
        if line is None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.name} exited ({self.proc.poll()}):\n{tail}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def ask(self, command: str, timeout: float = 60.0) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()
        return self.answer(timeout)

    def collect(self) -> dict[str, Any]:
        self.ask("collect")
        data: dict[str, Any] = json.loads(self.output.read_text())
        return data

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.write(b"exit\n")
                self.proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        stop_process(self.proc)


def start_clients(
    workdir: Path, host: str, port: int, counts: list[int], config: Config, *, topics: int,
    label: str, first_source: int = 1, cpus: set[int] | None = None,
) -> list[Client]:  # fmt: skip
    clients, first = [], 0
    for index, count in enumerate(counts):
        clients.append(
            Client(
                workdir,
                f"{label}-client{index}",
                cpus,
                *("--host", host, "--port", str(port), "--count", str(count)),
                *("--topics", str(topics), "--first", str(first)),
                *("--source", CLIENT_SOURCES.format(first_source + index)),
                *("--concurrency", str(config.concurrency), "--timeout", str(config.ramp_timeout)),
            )
        )
        first += count
    return clients


@contextlib.contextmanager
def stopping(clients: list[Client]) -> Iterator[list[Client]]:
    try:
        yield clients
    finally:
        for client in clients:
            client.stop()


def ramp_up(clients: list[Client], config: Config) -> dict[str, Any]:
    """Wait for every client's ready line (each bounded by the ramp timeout)."""
    t0 = time.monotonic()
    ready = [client.answer(config.ramp_timeout + 30.0) for client in clients]
    return {
        "seconds": time.monotonic() - t0,
        "ready": sum(r["ready"] for r in ready),
        "failed": sum(r["failed"] for r in ready),
        "retries": sum(r["retries"] for r in ready),
        "errors": [e for r in ready for e in r["errors"]][:10],
    }


def http(
    method: str, host: str, port: int, path: str, body: Any = None, timeout: float = 60.0
) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://{host}:{port}{path}", data=data, method=method,
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy
    with opener.open(request, timeout=timeout) as response:
        return json.loads(response.read())


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"not within {timeout} s: {what}")
        time.sleep(0.05)


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p99 (nearest rank) and max, in the values' unit."""
    if not values:
        return {"p50": math.nan, "p99": math.nan, "max": math.nan, "n": 0}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

    return {"p50": rank(0.5), "p99": rank(0.99), "max": ordered[-1], "n": len(ordered)}


# -- the benchmark --------------------------------------------------------------------------


class Scale(harness.Harness):
    def __init__(self, config: Config, log: harness.Log) -> None:
        super().__init__(config, log, "bench-scale-")
        self.config = config

    def run(self) -> dict[str, Any]:
        data: dict[str, Any] = {"sessions": [], "throughput": []}
        if self.config.part_a:
            data["sessions"] = self.sessions_per_process()
        if self.config.part_b:
            data["throughput"] = self.throughput()
        data["versions"] = versions("redis")
        return data

    # -- part A -------------------------------------------------------------------------

    def session_target(self) -> int:
        import resource

        if self.config.sessions is not None:
            return self.config.sessions
        return resource.getrlimit(resource.RLIMIT_NOFILE)[1] - HEADROOM

    def sessions_per_process(self) -> list[dict[str, Any]]:
        legs = []
        for round_no in range(self.config.rounds):
            for kind in ("spry", "raw")[:: -1 if round_no % 2 else 1]:
                self.wait_quiet()
                self.log(f"part A round {round_no}: {kind}, {self.session_target()} sessions")
                try:
                    legs.append({"round": round_no, "kind": kind, **self.hold(kind, round_no)})
                except RuntimeError as error:
                    self.problems.append(f"sessions per process, {kind} round {round_no}: {error}")
        return legs

    def hold(self, kind: str, round_no: int) -> dict[str, Any]:
        c, target = self.config, self.session_target()
        name = f"{kind}{round_no}"
        server = Proc(
            SERVER, f"scale server ({kind})", self.server_cpus, self.workdir,
            "--kind", kind, "--broker", "memory", name=name, host=SERVER_HOST,
        )  # fmt: skip
        with server:
            count = http("GET", server.host, server.port, "/count")
            rss_before = server.rss()
            counts = split(target, c.clients)
            with stopping(
                start_clients(
                    self.workdir, server.host, server.port, counts, c, topics=1, label=name
                )
            ) as clients:
                ramp = ramp_up(clients, c)
                self.log(
                    f"  {ramp['ready']} open in {ramp['seconds']:.1f} s "
                    f"({ramp['failed']} failed, {ramp['retries']} retries)"
                )
                if ramp["failed"]:
                    self.problems.append(
                        f"{kind} round {round_no}: {ramp['failed']} of {target} sessions never "
                        f"opened: {ramp['errors'][:3]}"
                    )

                def server_count() -> int:
                    return int(http("GET", server.host, server.port, "/count")["sessions"])

                wait_for(lambda: server_count() >= ramp["ready"], 30.0, "the server's count")
                time.sleep(c.settle)  # let the allocator settle
                rss_after = server.rss()
                sessions = server_count()
                self.publish_once(server, f"{name}warm")  # unrecorded: first-call costs
                time.sleep(0.3)
                publishes = []
                for number in range(c.publishes):
                    publishes.append(self.publish_once(server, f"{name}p{number}"))
                    time.sleep(0.3)
                wanted = {p["id"] for p in publishes}
                reached: dict[str, list[float]] = {p["id"]: [] for p in publishes}

                def everyone_got_it() -> bool:
                    got = [client.collect() for client in clients]
                    for key in reached:
                        reached[key] = [t for g in got for t in g["reached"].get(key, [])]
                    return all(len(reached[key]) >= ramp["ready"] for key in wanted)

                with contextlib.suppress(RuntimeError):
                    wait_for(everyone_got_it, 30.0, "every session's copy")
                errors = [e for client in clients for e in client.collect()["errors"]]
            for p in publishes:
                times = [t - p["t0"] for t in reached[p["id"]]]
                p.update(reach=percentiles(times), received=len(times))
                if len(times) != ramp["ready"]:
                    self.problems.append(
                        f"{kind} round {round_no}: publish {p['id']} reached {len(times)} of "
                        f"{ramp['ready']} open sessions"
                    )
            if errors:
                self.problems.append(f"{kind} round {round_no}: client errors {errors[:3]}")
        per_session = (rss_after - rss_before) / sessions if sessions else math.nan
        self.log(
            f"  {sessions} sessions, {per_session / 1024:.1f} KiB each; reach max "
            + ", ".join(f"{p['reach']['max'] * 1000:.0f} ms" for p in publishes)
        )
        return {
            "target": target,
            "sessions": sessions,
            "nofile": {"soft": count["soft"], "hard": count["hard"]},
            "ramp": ramp,
            "rss_before": rss_before,
            "rss_after": rss_after,
            "bytes_per_session": per_session,
            "publishes": publishes,
        }

    def publish_once(self, server: Proc, ident: str) -> dict[str, Any]:
        t0 = time.time()  # the clients' kernel receive stamps are CLOCK_REALTIME too
        answer = http("POST", server.host, server.port, "/publish", {"topic": "t0", "data": ident})
        return {
            "id": ident,
            "t0": t0,
            "answered": time.time() - t0,
            "delivered": answer["delivered"],
            "server_loop": answer["seconds"],
        }

    # -- part B -------------------------------------------------------------------------

    def throughput(self) -> list[dict[str, Any]]:
        legs = []
        brokers = [("given", self.config.broker_url)] if self.config.broker_url else [
            (name, None) for name in self.config.brokers
        ]  # fmt: skip
        for label, url in brokers:
            self.wait_quiet()
            self.log(f"part B: {label} broker, {self.config.processes} processes")
            try:
                with broker(label, url) as (found, pids):
                    legs.append(
                        {"broker": label, "url": found, **self.many_topics(found, label, pids)}
                    )
            except BrokerMissing as missing:
                self.log(f"  ERROR: {label} broker: {missing}")
                self.problems.append(f"throughput, {label}: not measured: {missing}")
                legs.append({"broker": label, "missing": str(missing)})
            except RuntimeError as error:
                self.problems.append(f"throughput, {label}: {error}")
        return legs

    def many_topics(self, url: str, label: str, broker_pids: list[int]) -> dict[str, Any]:
        c = self.config
        with contextlib.ExitStack() as stack:
            servers = [
                stack.enter_context(
                    Proc(
                        SERVER, f"scale server {i} ({label})", ALL_CPUS, self.workdir,
                        "--kind", "spry", "--broker", url, name=f"{label}-p{i}",
                        host=f"127.0.0.{2 + i}",
                    )
                )
                for i in range(c.processes)
            ]  # fmt: skip
            clients = stack.enter_context(stopping([
                start_clients(
                    self.workdir, s.host, s.port, [c.topics], c, topics=c.topics,
                    label=f"{label}-p{i}", first_source=100 + i, cpus=ALL_CPUS,
                )[0]
                for i, s in enumerate(servers)
            ]))  # fmt: skip
            ramp = ramp_up(clients, c)
            if ramp["failed"]:
                raise RuntimeError(f"{ramp['failed']} sessions never opened: {ramp['errors'][:3]}")
            time.sleep(c.settle)  # every process subscribed at the broker

            def load(seconds: float) -> list[dict[str, Any]]:
                with concurrent.futures.ThreadPoolExecutor(len(servers)) as pool:
                    jobs = [
                        pool.submit(
                            http, "POST", s.host, s.port, "/load",
                            {"origin": i, "topics": c.topics, "seconds": seconds,
                             "publishers": c.publishers},
                            seconds + 120.0,
                        )
                        for i, s in enumerate(servers)
                    ]  # fmt: skip
                    return [job.result() for job in jobs]

            load(c.warmup)
            time.sleep(c.settle)
            for client in clients:
                client.ask("mark")
            cpu0 = [s.cpu() for s in servers]
            broker0 = [process_cpu(pid) for pid in broker_pids]
            answers = load(c.seconds)
            cpu = [s.cpu() - before for s, before in zip(servers, cpu0, strict=True)]
            broker_cpu = [
                process_cpu(pid) - before for pid, before in zip(broker_pids, broker0, strict=True)
            ]
            time.sleep(c.settle)  # the last messages through the broker
            got = [client.collect() for client in clients]
        published = sum(a["published"] for a in answers)
        seconds = max(a["seconds"] for a in answers)
        expected = published * c.processes
        delivered = sum(sum(g["counts"].values()) for g in got)
        local: list[float] = []
        remote: list[float] = []
        for i, g in enumerate(got):
            for origin, values in g["latencies_us"].items():
                (local if int(origin) == i else remote).extend(v / 1000 for v in values)
        errors = [e for g in got for e in g["errors"]]
        if errors:
            self.problems.append(f"throughput, {label}: client errors {errors[:3]}")
        if delivered < expected:
            self.notes.append(
                f"throughput, {label}: {expected - delivered:,} of {expected:,} deliveries "
                "missing (a broker queue full at full speed drops the oldest)"
            )
        result = {
            "processes": c.processes,
            "topics": c.topics,
            "ramp": ramp,
            "published": published,
            "seconds": seconds,
            "delivered": delivered,
            "expected": expected,
            "deliveries_per_s": delivered / seconds,
            "published_per_s": published / seconds,
            "server_cpu": cpu,
            # CPU seconds of each redis-server (one node, or each shard) over the run.
            "broker_cpu": broker_cpu,
            "latency_ms": {
                "all": percentiles(local + remote),
                "local": percentiles(local),
                "remote": percentiles(remote),
            },
        }
        self.log(
            f"  {result['deliveries_per_s']:,.0f} deliveries/s ({delivered:,} of {expected:,}); "
            f"latency p50 {result['latency_ms']['all']['p50']:.1f} ms, "
            f"p99 {result['latency_ms']['all']['p99']:.1f} ms"
        )
        return result


class BrokerMissing(RuntimeError):
    """What a broker leg needs and this checkout lacks."""


@contextlib.contextmanager
def broker(label: str, url: str | None) -> Iterator[tuple[str, list[int]]]:
    """The broker URL of one part B leg and the PIDs of its ``redis-server`` processes
    (none for a given URL), started (and stopped by PID) here."""
    if url is not None:
        yield url, []
        return
    if label == "redis":
        path = redis_server_path()
        if path is None:
            raise BrokerMissing("redis-server not found (apt-get install -y redis-server)")
        redis = RedisProcess(path)
        redis.start()
        assert redis.proc is not None
        os.sched_setaffinity(redis.proc.pid, ALL_CPUS)
        try:
            yield redis.url, [redis.proc.pid]
        finally:
            redis.cleanup()
        return
    if label == "cluster":
        with cluster() as found:
            yield found
        return
    raise BrokerMissing(f"unknown broker {label!r} (redis, cluster)")


@contextlib.contextmanager
def cluster() -> Iterator[tuple[str, list[int]]]:
    """A 3-master Redis Cluster (``tests.support.clusterproc``), each master on a loopback
    address of its own, and its ``redis+cluster://`` URL; stopped by PID afterwards.

    Raises:
        BrokerMissing: this checkout has no cluster broker (``redis+cluster://``), or
            ``redis-server`` / ``redis-cli`` are missing.
    """
    path = redis_server_path()
    if path is None:
        raise BrokerMissing("redis-server not found (apt-get install -y redis-server)")
    if not cluster_broker_available():
        raise BrokerMissing(CLUSTER_NEEDED)
    from tests.support.clusterproc import RedisClusterProcess, redis_cli_path

    if redis_cli_path() is None:
        raise BrokerMissing("redis-cli not found (apt-get install -y redis-tools)")
    nodes = RedisClusterProcess(path, masters=3, hosts=CLUSTER_HOSTS)
    nodes.start()
    try:
        for node in nodes.nodes:
            if node.process.proc is not None:
                os.sched_setaffinity(node.process.proc.pid, ALL_CPUS)
        yield nodes.url, [n.process.proc.pid for n in nodes.nodes if n.process.proc is not None]
    finally:
        nodes.cleanup()


def cluster_broker_available() -> bool:
    """Whether ``broker_from_url`` knows ``redis+cluster://`` (the cluster broker's commit)."""
    from aiohttp_spry.pubsub import broker_from_url

    try:
        broker_from_url("redis+cluster://127.0.0.1:1")
    except ValueError:
        return False
    return True


OPTIONS = [
    Option("--rounds", "part A rounds, each spry and raw (default 2)", int),
    Option("--sessions", "part A sessions per server (default: open-file limit - 100)", int),
    Option("--clients", "part A client processes (default 4)", int),
    Option("--processes", "part B server processes (default 3)", int),
    Option("--topics", "part B topics, one session per topic per process (default 1000)", int),
    Option("--seconds", "part B measured seconds of full-speed publishing (default 10)", float),
    Option("--brokers", "part B brokers: redis,cluster", harness.comma_list),
    Option("--broker-url", "part B against this broker URL only (started elsewhere)", str),
    Option("--no-part-a", "skip sessions per process"),
    Option("--no-part-b", "skip throughput across processes"),
    Option("--output", "where to write the Markdown results", Path),
]


def run(config: Config, command: str, log: harness.Log = harness.printer) -> dict[str, Any]:
    bench = Scale(config, log)
    data = harness.run(bench, command, bench.run, render.render, config.json_output)
    if config.results_md is not None:
        old = config.results_md.read_text() if config.results_md.exists() else ""
        config.results_md.write_text(with_section(old, render.SECTION, render.section(data)))
        log(f"wrote its section of {config.results_md}")
    return data


def main(argv: list[str] | None = None, log: harness.Log = harness.printer) -> int:
    config, args, command = harness.parse(
        argv,
        "python -m bench.scale",
        "Idle sessions per process (spry vs raw aiohttp) and many-topic throughput across "
        "processes (one Redis node vs a 3-shard cluster); writes bench/RESULTS-scale.md.",
        Config,
        QUICK,
        OPTIONS,
    )
    if args.quick and args.output is None:  # a smoke run must not overwrite the results
        config.output = Path(tempfile.mkdtemp(prefix="bench-scale-quick-")) / "RESULTS-scale.md"
    if args.quick or args.output is not None:  # elsewhere: leave bench/RESULTS.md alone
        config.results_md = None
    if args.output is not None or args.quick:
        config.json_output = config.output.with_name("results-scale.json")
    return 1 if run(config, command, log)["problems"] else 0
