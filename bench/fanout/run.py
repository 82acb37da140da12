"""``python -m bench.fanout``: fan-out throughput and cross-process latency through Redis.

Benchmark 1, fan-out throughput. For each N (1,000 and 5,000), fresh server
processes on the server CPU: one process with both the raw aiohttp floor and
aiohttp_spry (``bench/servers/fanout_local.py``: two routes, N subscribers
each), and python-socketio in its own process (``fanout_socketio.py``, N
members of one room). One client process on the client CPU holds all 3N
subscriber sockets. A round is one burst to each set, in the order raw, spry,
socketio (reversed on odd rounds); a burst is ``k`` 64-byte messages published
back to back by the server, triggered by one command on a control WebSocket,
timed from the trigger to the last byte of the last subscriber. Ratios are
taken within a round, then summarised (median, min–max).

Benchmark 2, latency through Redis: a ``redis-server`` started here, two
aiohttp_spry processes with ``RedisBroker`` (``fanout_redis.py``), half the
subscribers on each; process A publishes timestamped messages at a steady
rate; every delivery's latency is taken on the client (``CLOCK_MONOTONIC`` is
one clock for all processes), for A's own subscribers (local) and B's (through
Redis).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from bench.procs import (
    ROOT,
    cpu_count,
    free_port,
    pin,
    process_cpu,
    process_rss,
    spawn_listening,
)
from bench.system import CpuTimes, git_revision, machine_facts, package_versions, revision_change

from . import report
from .client import SIO, WS, BurstResult, Control, FanoutClient, LatencyResult
from .wire import CONTROL_PATH, RAW_PATH, REDIS_PATH, SIO_PATH, SPRY_PATH, TOPIC

HERE = Path(__file__).resolve().parent.parent  # bench/
CONTENDERS = ("raw", "spry", "socketio")
REDIS_CHANNEL = "aiohttp_spry:" + TOPIC  # RedisBroker's default channel prefix + topic


@attrs.define
class Config:
    sizes: tuple[int, ...] = (1000, 5000)
    rounds: int = 5
    #: Subscriber-messages per raw / spry burst: k = ceil(deliveries / N) messages.
    deliveries: int = 100_000
    #: The same for python-socketio, about ten times slower per delivery.
    sio_deliveries: int = 20_000
    #: One unmeasured burst per set before the first round, of this many deliveries.
    warmup_deliveries: int = 20_000
    sample_every: int = 50
    #: SO_RCVLOWAT = the whole burst on each subscriber socket (see FanoutClient.burst);
    #: without it, the client sleeps ``coalesce`` between passes over the ready sockets.
    lowat: bool = True
    coalesce: float = 0.025
    tail_coalesce: float = 0.001
    contenders: tuple[str, ...] = CONTENDERS
    redis: bool = True
    redis_subscribers: int = 1000
    redis_rate: float = 10.0
    redis_seconds: float = 20.0
    redis_warmup: float = 1.0
    #: The latency client polls without sleeping: a delivery then never has to wake it
    #: (on a VM, waking the other CPU costs the server tens of µs per delivery).
    redis_busy_poll: bool = True
    #: Streams run again when neighbours disturbed one, whatever the noise budget left.
    redis_retries: int = 1
    pin: bool = True
    output: Path = HERE / "RESULTS-fanout.md"
    json_output: Path = HERE / "results-fanout.json"
    # Noisy neighbours, as in bench/run.py: wait (bounded) for the CPUs to be
    # nearly idle before each burst; measure again when a burst was disturbed.
    quiet_below: float = 0.25
    quiet_wait: float = 10.0
    max_other: float = 0.3
    retries: int = 2
    noise_budget: float = 90.0


QUICK = {
    "sizes": (50,),
    "rounds": 2,
    "deliveries": 1000,
    "sio_deliveries": 250,
    "warmup_deliveries": 250,
    "sample_every": 1,
    "redis_subscribers": 50,
    "redis_rate": 50.0,
    "redis_seconds": 1.0,
    "redis_warmup": 0.2,
    "quiet_wait": 1.0,
    "retries": 0,
    "redis_retries": 0,
    "noise_budget": 5.0,
}


class Proc:
    """One server process (``python -m MODULE --port PORT ...``), pinned, stopped by PID."""

    def __init__(
        self, name: str, module: str, cpus: set[int] | None, log_dir: Path, *args: str
    ) -> None:
        self.name = name
        self.module = module
        self.args = args
        self.cpus = cpus
        self.port = free_port()
        self.log_path = log_dir / f"{name}-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 30.0) -> Proc:
        command = [sys.executable, "-m", self.module, "--port", str(self.port), *self.args]
        self.proc = spawn_listening(
            command, self.cpus, self.log_path, self.port, self.name, timeout
        )
        return self

    def cpu(self) -> float:
        return process_cpu(self.pid)

    def rss(self) -> int:
        return process_rss(self.pid)

    def pause(self) -> None:
        """SIGSTOP, so it cannot compete for the server CPU (e.g. with its pings)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.pid, signal.SIGCONT)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def raise_fd_limit() -> tuple[int, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def messages_for(deliveries: int, subscribers: int) -> int:
    return max(2, math.ceil(deliveries / subscribers))


def percentile(sorted_values: list[int], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


class Harness:
    def __init__(self, config: Config, log: Callable[[str], None]) -> None:
        self.config = config
        self.log = log
        cpus = sorted(os.sched_getaffinity(0))
        if config.pin and cpu_count() >= 2:
            self.server_cpus: set[int] | None = {cpus[0]}
            self.client_cpus: set[int] | None = {cpus[1]}
        else:
            self.server_cpus = self.client_cpus = None
        self.workdir = Path(tempfile.mkdtemp(prefix="spry-fanout-"))
        self.bursts: list[dict[str, Any]] = []
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.facts: dict[str, Any] = {}
        self.noise_spent = 0.0
        self.burst_id = 0

    # -- noise --------------------------------------------------------------------------

    def wait_quiet(self, client: FanoutClient) -> float:
        """Wait (bounded) for the machine to go idle, answering Socket.IO pings meanwhile."""
        c = self.config
        started = time.monotonic()
        while True:
            before = CpuTimes.read()
            client.service(0.2)
            busy = sum(CpuTimes.read().busy_since(before).values())
            waited = time.monotonic() - started
            if (
                busy < c.quiet_below
                or waited > c.quiet_wait
                or self.noise_spent + waited > c.noise_budget
            ):
                self.noise_spent += max(0.0, waited - 0.2)
                return busy

    # -- benchmark 1 ----------------------------------------------------------------------

    def fanout(self) -> None:
        for n in self.config.sizes:
            self.fanout_size(n)

    def fanout_size(self, n: int) -> None:
        c = self.config
        needed = 3 * n + 64
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if needed > soft:
            self.problems.append(
                f"N={n}: the client needs about {needed} file descriptors, RLIMIT_NOFILE is {soft}"
            )
            return
        local = Proc("fanout_local", "bench.servers.fanout_local", self.server_cpus, self.workdir)
        sio = Proc(
            "fanout_socketio", "bench.servers.fanout_socketio", self.server_cpus, self.workdir
        )
        procs = {"raw": local, "spry": local, "socketio": sio}
        client = FanoutClient()
        controls: dict[str, Control] = {}
        try:
            local.start()
            if "socketio" in c.contenders:
                sio.start()
            groups = {}
            t0 = time.perf_counter()
            for name in c.contenders:
                kind = SIO if name == "socketio" else WS
                path = {"raw": RAW_PATH, "spry": SPRY_PATH, "socketio": SIO_PATH}[name]
                groups[name] = client.open_group(
                    name, kind, procs[name].port, path, n, c.sample_every
                )
            opened = time.perf_counter() - t0
            controls["local"] = Control(local.port, CONTROL_PATH)
            if "socketio" in c.contenders:
                controls["socketio"] = Control(sio.port, CONTROL_PATH)
            control_of = {
                name: controls["socketio" if name == "socketio" else "local"]
                for name in c.contenders
            }
            counts = self.wait_subscribed(client, controls, n)
            for server, answer in counts.items():
                sets = sum(1 for key in answer if key in c.contenders)
                if answer["fds"]["soft"] < sets * n + 64:
                    self.problems.append(
                        f"N={n}: the {server} server's RLIMIT_NOFILE is {answer['fds']}, "
                        f"too low for {sets * n} subscribers"
                    )
            self.log(
                f"N={n}: {len(groups) * n} subscribers open in {opened:.1f} s; "
                f"server RSS local {local.rss() / 2**20:.0f} MiB"
                + (f", socketio {sio.rss() / 2**20:.0f} MiB" if sio.proc else "")
            )
            self.facts[f"N={n}"] = {
                "open_seconds": opened,
                "counts": counts,
                "rss_local": local.rss(),
                "rss_socketio": sio.rss() if sio.proc else None,
            }
            ks = {
                name: messages_for(c.sio_deliveries if name == "socketio" else c.deliveries, n)
                for name in c.contenders
            }
            # Warm-up: one unmeasured burst per set (code paths, allocator, TCP buffers).
            for name in c.contenders:
                k = messages_for(c.warmup_deliveries, n)
                result = self.one_burst(
                    client, groups[name], control_of[name], procs[name], k, [local, sio]
                )
                self.check(n, "warm-up", result)
            for round_no in range(c.rounds):
                for name in round_order(c.contenders, round_no):
                    result, attempts, idle = self.measured_burst(
                        client, groups[name], control_of[name], procs[name], ks[name], [local, sio]
                    )
                    self.check(n, f"round {round_no + 1}", result)
                    self.record(n, round_no, result, attempts, idle)
        finally:
            for control in controls.values():
                control.close()
            try:
                client.close()
            finally:
                local.stop()
                sio.stop()
        for problem in client.totals.errors:
            self.problems.append(f"N={n}: {problem}")
        if client.pings:
            self.notes.append(f"N={n}: {client.pings} Engine.IO pings answered")

    def wait_subscribed(
        self, client: FanoutClient, controls: dict[str, Control], n: int, timeout: float = 30.0
    ) -> dict[str, Any]:
        """Until every server says all N of each of its sets are subscribed."""
        deadline = time.monotonic() + timeout
        while True:
            counts = {name: control.ask("count") for name, control in controls.items()}
            sets = {
                key: value
                for answer in counts.values()
                for key, value in answer.items()
                if key in CONTENDERS
            }
            if all(value >= n for key, value in sets.items() if key in self.config.contenders):
                return counts
            if time.monotonic() > deadline:
                raise RuntimeError(f"subscribers never all registered: {counts}")
            client.service(0.05)

    def one_burst(
        self,
        client: FanoutClient,
        group: Any,
        control: Control,
        proc: Proc,
        k: int,
        peers: list[Proc],
    ) -> BurstResult:
        """One burst; the other server processes are paused (SIGSTOP) while it runs, so
        their background work (python-socketio pings N clients every 25 s) does not take
        the server CPU from the one measured. The pauses last a burst, a few seconds, far
        less than Engine.IO's 20 s ping timeout."""
        c = self.config
        self.burst_id += 1
        paused = [peer for peer in peers if peer is not proc and peer.proc is not None]
        for peer in paused:
            peer.pause()
        try:
            return client.burst(
                group,
                control,
                self.burst_id,
                k,
                proc.cpu,
                lowat=c.lowat,
                coalesce=c.coalesce,
                tail_coalesce=c.tail_coalesce,
            )
        finally:
            for peer in paused:
                peer.resume()

    def measured_burst(
        self,
        client: FanoutClient,
        group: Any,
        control: Control,
        proc: Proc,
        k: int,
        peers: list[Proc],
    ) -> tuple[BurstResult, int, float]:
        c = self.config
        attempts = 0
        while True:
            attempts += 1
            idle = self.wait_quiet(client)
            started = time.monotonic()
            result = self.one_burst(client, group, control, proc, k, peers)
            other = result.other()
            if (
                other <= c.max_other
                or attempts > c.retries
                or self.noise_spent >= c.noise_budget
                or result.errors
            ):
                return result, attempts, idle
            self.noise_spent += time.monotonic() - started
            self.log(f"    {group.name} disturbed ({other:.2f} cores of other CPU use); again")

    def check(self, n: int, when: str, result: BurstResult) -> None:
        for error in result.errors:
            self.problems.append(f"N={n}, {when}, {result.group}: {error}")
        if result.verified == 0:
            self.problems.append(f"N={n}, {when}, {result.group}: no frame was decoded")

    def record(
        self, n: int, round_no: int, result: BurstResult, attempts: int, idle: float
    ) -> None:
        entry = {
            "subscribers": n,
            "round": round_no,
            "contender": result.group,
            "messages": result.messages,
            "deliveries": result.deliveries,
            "seconds": result.seconds,
            "rate": result.rate,
            "client_cpu": result.client_cpu,
            "server_cpu": result.server_cpu,
            "client_share": result.client_share,
            "server_share": result.server_share,
            "other": result.other(),
            "cpu_busy": result.cpu_busy,
            "verified": result.verified,
            "server_loop_seconds": result.reply.get("seconds"),
            "server_loop_cpu": result.reply.get("cpu"),
            "attempts": attempts,
            "idle_before": idle,
            "reads": result.reads,
            "errors": list(result.errors),
        }
        self.bursts.append(entry)
        self.log(
            f"  N={n} round {round_no + 1} {result.group:<9} {result.rate:>9,.0f} msg/s  "
            f"{result.seconds * 1000:7.1f} ms  client {result.client_share:4.0%}  "
            f"server {result.server_share:4.0%}  other {result.other():.2f}"
        )

    # -- benchmark 2 ----------------------------------------------------------------------

    def redis_latency(self) -> dict[str, Any] | None:
        c = self.config
        if not c.redis:
            return None
        try:
            from tests.redisproc import RedisProcess, redis_server_path
        except ImportError as error:  # run from elsewhere than the repository root
            self.notes.append(f"Redis benchmark skipped: cannot import tests.redisproc ({error})")
            return None
        executable = redis_server_path()
        if executable is None:
            self.notes.append("Redis benchmark skipped: no redis-server (apt-get install redis)")
            return None
        half = c.redis_subscribers // 2
        count = max(2, round(c.redis_rate * c.redis_seconds))
        warmup = min(count - 1, round(c.redis_rate * c.redis_warmup))
        redis = RedisProcess(executable)
        a = b = None
        client = FanoutClient()
        controls: list[Control] = []
        try:
            redis.start()
            assert redis.proc is not None
            pin(redis.proc.pid, self.server_cpus)
            a = Proc(
                "fanout_redis_A",
                "bench.servers.fanout_redis",
                self.server_cpus,
                self.workdir,
                "--redis",
                redis.url,
            ).start()
            b = Proc(
                "fanout_redis_B",
                "bench.servers.fanout_redis",
                self.server_cpus,
                self.workdir,
                "--redis",
                redis.url,
            ).start()
            group_a = client.open_group("A", WS, a.port, REDIS_PATH, half, c.sample_every)
            group_b = client.open_group("B", WS, b.port, REDIS_PATH, half, c.sample_every)
            control_a = Control(a.port, CONTROL_PATH)
            control_b = Control(b.port, CONTROL_PATH)
            controls = [control_a, control_b]
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
                f"redis: {half} subscribers on A and on B, NUMSUB {REDIS_CHANNEL} = {numsub}; "
                f"{count} messages at {c.redis_rate:g}/s from A"
            )
            attempts: list[dict[str, Any]] = []
            while True:
                self.wait_quiet(client)
                run_no = len(attempts) + 1
                attempt = self.latency_stream(
                    client, [group_a, group_b], control_a, {"A": a, "B": b}, redis, run_no
                )
                attempts.append(attempt)
                other = attempt["other"]
                if (
                    other <= c.max_other
                    or len(attempts) > c.redis_retries
                    or attempt["result"].errors
                ):
                    break
                self.noise_spent += attempt["result"].seconds
                self.log(f"    latency stream disturbed ({other:.2f} cores of other CPU); again")
        finally:
            for control in controls:
                control.close()
            try:
                client.close()
            finally:
                for proc in (a, b):
                    if proc is not None:
                        proc.stop()
                redis.cleanup()
        # The least disturbed stream is the one reported; all are in the JSON.
        best = min(attempts, key=lambda x: (bool(x["result"].errors), x["other"]))
        result = best["result"]
        for attempt in attempts:
            for error in attempt["result"].errors:
                self.problems.append(f"redis latency, stream {attempt['run']}: {error}")
            delivered = attempt["result"].reply.get("delivered")
            if delivered != half * count:
                self.problems.append(
                    f"redis latency, stream {attempt['run']}: A delivered {delivered} locally, "
                    f"expected {half * count}"
                )
        for error in client.totals.errors:
            self.problems.append(f"redis latency: {error}")
        summary = self.summarise_latency(result, half, count, warmup)
        summary.update(
            {
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
                        "cpu_busy": x["busy"],
                        "errors": list(x["result"].errors),
                        **{
                            side: {
                                key: value
                                for key, value in stats.items()
                                if key in ("p50_ms", "p99_ms", "max_ms")
                            }
                            for side, stats in self.summarise_latency(
                                x["result"], half, count, warmup
                            )["sides"].items()
                        },
                    }
                    for x in attempts
                ],
            }
        )
        for side in ("A", "B"):
            s = summary["sides"][side]
            self.log(
                f"  redis {side}: p50 {s['p50_ms']:.2f} ms  p99 {s['p99_ms']:.2f} ms  "
                f"max {s['max_ms']:.2f} ms  ({s['deliveries']:,} deliveries)"
            )
        return summary

    def latency_stream(
        self,
        client: FanoutClient,
        groups: list[Any],
        control: Control,
        procs: dict[str, Proc],
        redis: Any,
        run_no: int,
    ) -> dict[str, Any]:
        """One timed stream, with the CPU use of every process involved."""
        c = self.config
        count = max(2, round(c.redis_rate * c.redis_seconds))
        warmup = min(count - 1, round(c.redis_rate * c.redis_warmup))
        cpu0 = {name: proc.cpu() for name, proc in procs.items()}
        redis_cpu0 = process_cpu(redis.proc.pid)
        busy0 = CpuTimes.read()
        result = client.latency(
            groups, control, run_no, count, c.redis_rate, warmup, busy_poll=c.redis_busy_poll
        )
        busy = CpuTimes.read().busy_since(busy0)
        cpu = {name: proc.cpu() - cpu0[name] for name, proc in procs.items()}
        cpu["redis"] = process_cpu(redis.proc.pid) - redis_cpu0
        cpu["client"] = result.client_cpu
        other = sum(busy.values()) - sum(cpu.values()) / result.seconds
        return {"run": run_no, "result": result, "cpu": cpu, "busy": busy, "other": other}

    @staticmethod
    def summarise_latency(
        result: LatencyResult, half: int, count: int, warmup: int
    ) -> dict[str, Any]:
        sides = {}
        for side, values in result.latencies.items():
            ordered = sorted(values)
            seen = sorted(result.observed[side])
            firsts = sorted(result.first[side])
            lasts = sorted(result.last[side])
            sides[side] = {
                "deliveries": len(ordered),
                "expected": half * (count - warmup),
                "p50_ms": percentile(ordered, 50) / 1e6,
                "p90_ms": percentile(ordered, 90) / 1e6,
                "p99_ms": percentile(ordered, 99) / 1e6,
                "p999_ms": percentile(ordered, 99.9) / 1e6,
                "max_ms": ordered[-1] / 1e6 if ordered else float("nan"),
                "min_ms": ordered[0] / 1e6 if ordered else float("nan"),
                "observed_p50_ms": percentile(seen, 50) / 1e6,
                "observed_p99_ms": percentile(seen, 99) / 1e6,
                "observed_max_ms": seen[-1] / 1e6 if seen else float("nan"),
                "first_p50_ms": percentile(firsts, 50) / 1e6,
                "first_p99_ms": percentile(firsts, 99) / 1e6,
                "last_p50_ms": percentile(lasts, 50) / 1e6,
                "last_p99_ms": percentile(lasts, 99) / 1e6,
            }
        return {
            "subscribers_per_process": half,
            "messages": count,
            "warmup_messages": warmup,
            "seconds": result.seconds,
            "client_cpu": result.client_cpu,
            "client_share": result.client_cpu / result.seconds if result.seconds else 0.0,
            "client_busy_share": 1 - result.idle_polls / result.polls if result.polls else 0.0,
            "verified": result.verified,
            "shared_reads": result.shared_reads,
            "sides": sides,
            # Per message (after the warm-up), in order: the first and last delivery, in ms.
            "per_message_ms": {
                side: {
                    "first": [round(x / 1e6, 3) for x in result.first[side]],
                    "last": [round(x / 1e6, 3) for x in result.last[side]],
                }
                for side in result.first
            },
        }

    # -- the whole run ----------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        pin(0, self.client_cpus)
        soft, hard = raise_fd_limit()
        self.facts["client_nofile"] = {"soft": soft, "hard": hard}
        started = time.perf_counter()
        self.fanout()
        redis = self.redis_latency()
        return {"seconds": time.perf_counter() - started, "redis": redis}


def round_order(contenders: tuple[str, ...], round_no: int) -> list[str]:
    """The bursts of one round: raw and spry twice, mirrored around socketio's one burst
    (raw spry socketio spry raw; spry raw socketio raw spry on odd rounds), so a linear
    drift of the machine cancels out of the spry/raw ratio within each round."""
    pair = [name for name in ("raw", "spry") if name in contenders]
    if round_no % 2:
        pair.reverse()
    middle = [name for name in contenders if name not in pair]
    return [*pair, *middle, *reversed(pair)]


def per_round(bursts: list[dict[str, Any]]) -> dict[str, Any]:
    """One round's bursts of one contender, pooled: total deliveries over total time."""
    deliveries = sum(b["deliveries"] for b in bursts)
    seconds = sum(b["seconds"] for b in bursts)
    server_cpu = sum(b["server_cpu"] for b in bursts)
    client_cpu = sum(b["client_cpu"] for b in bursts)
    return {
        "round": bursts[0]["round"],
        "bursts": len(bursts),
        "messages": bursts[0]["messages"],
        "deliveries": deliveries,
        "seconds": seconds / len(bursts),
        "rate": deliveries / seconds,
        "server_cpu": server_cpu,
        "client_cpu": client_cpu,
        "client_share": client_cpu / seconds,
        "server_share": server_cpu / seconds,
        "other": sum(b["other"] * b["seconds"] for b in bursts) / seconds,
        "reads": sum(b["reads"] for b in bursts),
        "loop_rate": deliveries / sum(b["server_loop_seconds"] for b in bursts),
        # How long after the server's loop ended the client had the last byte (with the
        # trigger's latency): the client's share of the measured time.
        "tail_ms": sum(b["seconds"] - b["server_loop_seconds"] for b in bursts)
        / len(bursts)
        * 1000,
    }


def summarise(bursts: list[dict[str, Any]], contenders: tuple[str, ...]) -> dict[str, Any]:
    """Per N and contender: median and min–max over rounds of the figures (each round's
    bursts of a contender pooled); per-round ratios."""
    out: dict[str, Any] = {}
    for n in sorted({b["subscribers"] for b in bursts}):
        mine = [b for b in bursts if b["subscribers"] == n]
        rounds = sorted({b["round"] for b in mine})
        by = {}
        for r in rounds:
            for name in contenders:
                group = [b for b in mine if b["round"] == r and b["contender"] == name]
                if group:
                    by[(r, name)] = per_round(group)
        table: dict[str, Any] = {}
        for name in contenders:
            runs = [by[(r, name)] for r in rounds if (r, name) in by]
            if not runs:
                continue
            table[name] = {
                "rate": spread([b["rate"] for b in runs]),
                "ms": spread([b["seconds"] * 1000 for b in runs]),
                "us_per_delivery": spread([b["server_cpu"] / b["deliveries"] * 1e6 for b in runs]),
                "client_share": spread([b["client_share"] for b in runs]),
                "server_share": spread([b["server_share"] for b in runs]),
                "other": spread([b["other"] for b in runs]),
                "frames_per_read": spread([b["deliveries"] / max(1, b["reads"]) for b in runs]),
                "loop_rate": spread([b["loop_rate"] for b in runs]),
                "tail_ms": spread([b["tail_ms"] for b in runs]),
                "client_us_per_delivery": spread(
                    [b["client_cpu"] / b["deliveries"] * 1e6 for b in runs]
                ),
                "messages": runs[0]["messages"],
                "deliveries": runs[0]["deliveries"] // runs[0]["bursts"],
                "bursts_per_round": runs[0]["bursts"],
            }
        ratios: dict[str, Any] = {}
        for top, bottom in (("spry", "raw"), ("spry", "socketio"), ("raw", "socketio")):
            pairs = [(by.get((r, top)), by.get((r, bottom))) for r in rounds]
            pairs = [(x, y) for x, y in pairs if x and y]
            if not pairs:
                continue
            ratios[f"{top}/{bottom}"] = {
                "rate": spread([x["rate"] / y["rate"] for x, y in pairs]),
                "loop_rate": spread([x["loop_rate"] / y["loop_rate"] for x, y in pairs]),
                "per_cpu": spread(
                    [
                        (x["deliveries"] / x["server_cpu"]) / (y["deliveries"] / y["server_cpu"])
                        for x, y in pairs
                        if x["server_cpu"] > 0 and y["server_cpu"] > 0
                    ]
                ),
            }
        out[str(n)] = {"table": table, "ratios": ratios, "rounds": len(rounds)}
    return out


def spread(values: list[float]) -> dict[str, float]:
    if not values:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def parse_args(argv: list[str] | None) -> Config:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fanout",
        description="Fan-out throughput (raw aiohttp loop, aiohttp_spry, python-socketio) "
        "and latency through Redis; writes bench/RESULTS-fanout.md.",
    )
    parser.add_argument("--quick", action="store_true", help="a tiny run (N=50), a smoke check")
    parser.add_argument("--rounds", type=int, help="rounds of alternating bursts per N")
    parser.add_argument("--sizes", help="comma-separated subscriber counts (default 1000,5000)")
    parser.add_argument("--deliveries", type=int, help="subscriber-messages per raw/spry burst")
    parser.add_argument("--sio-deliveries", type=int, help="the same for python-socketio")
    parser.add_argument("--no-socketio", action="store_true", help="raw and spry only")
    parser.add_argument("--no-redis", action="store_true", help="skip the Redis latency part")
    parser.add_argument("--no-fanout", action="store_true", help="the Redis latency part only")
    parser.add_argument("--redis-seconds", type=float, help="length of the latency stream")
    parser.add_argument("--redis-rate", type=float, help="messages per second in the stream")
    parser.add_argument(
        "--no-lowat",
        action="store_true",
        help="read every subscriber as data comes (with sleeps) instead of setting SO_RCVLOWAT",
    )
    parser.add_argument(
        "--no-busy-poll",
        action="store_true",
        help="the latency client sleeps in epoll_wait instead of polling",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and client CPUs")
    parser.add_argument("--output", type=Path, help="where to write the Markdown results")
    parser.add_argument("--json", type=Path, help="where to write the JSON results")
    args = parser.parse_args(argv)
    config = Config(**QUICK) if args.quick else Config()  # type: ignore[arg-type]
    if args.quick and args.output is None:
        # A smoke run must not overwrite the published results.
        config.output = Path(tempfile.gettempdir()) / "RESULTS-fanout-quick.md"
        config.json_output = Path(tempfile.gettempdir()) / "results-fanout-quick.json"
    for name in ("rounds", "deliveries", "sio_deliveries", "redis_seconds", "redis_rate"):
        value = getattr(args, name)
        if value is not None:
            setattr(config, name, value)
    if args.sizes:
        config.sizes = tuple(int(x) for x in args.sizes.split(",") if x.strip())
    if args.no_fanout:
        config.sizes = ()
    if args.no_socketio:
        config.contenders = ("raw", "spry")
    config.redis = not args.no_redis
    config.redis_busy_poll = not args.no_busy_poll
    config.lowat = not args.no_lowat
    config.pin = not args.no_pin
    if args.output is not None:
        config.output = args.output
        config.json_output = args.json or args.output.with_suffix(".json")
    elif args.json is not None:
        config.json_output = args.json
    return config


def run(config: Config, command: str, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run everything and write the results; returns what was written to the JSON file."""
    harness = Harness(config, log)
    started = dt.datetime.now(dt.timezone.utc)
    revision_before = git_revision(ROOT)
    log(
        f"{command}: N in {list(config.sizes)}, {config.rounds} rounds; server CPU "
        f"{harness.server_cpus}, client CPU {harness.client_cpus}"
    )
    outcome = harness.run()
    revision_after = git_revision(ROOT)
    changed = revision_change(revision_before, revision_after)
    if changed is not None:
        harness.notes.append(changed)
    versions = package_versions()
    for name in ("python-socketio", "python-engineio", "redis"):
        try:
            import importlib.metadata

            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    for name in ("starlette", "uvicorn", "httptools", "wrk"):
        versions.pop(name, None)
    data = {
        "command": command,
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "wall_seconds": outcome["seconds"],
        "revision": revision_before,
        "machine": machine_facts(),
        "load_before": os.getloadavg(),
        "versions": versions,
        "server_cpus": sorted(harness.server_cpus) if harness.server_cpus else None,
        "client_cpus": sorted(harness.client_cpus) if harness.client_cpus else None,
        "config": {
            key: (str(value) if isinstance(value, Path) else value)
            for key, value in attrs.asdict(config).items()
        },
        "facts": harness.facts,
        "noise_seconds": harness.noise_spent,
        "problems": harness.problems,
        "notes": harness.notes,
        "summary": summarise(harness.bursts, config.contenders),
        "bursts": harness.bursts,
        "redis": outcome["redis"],
    }
    config.output.write_text(report.render(data))
    config.json_output.write_text(json.dumps(data, indent=1))
    log(f"wrote {config.output} and {config.json_output} in {outcome['seconds']:.0f} s")
    for problem in harness.problems:
        log(f"PROBLEM: {problem}")
    if harness.problems:
        log(f"server logs kept in {harness.workdir}")
    else:
        shutil.rmtree(harness.workdir, ignore_errors=True)
    return data


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    args = sys.argv[1:] if argv is None else argv
    command = "python -m bench.fanout" + (" " + shlex.join(args) if args else "")

    def log(line: str) -> None:
        print(line, flush=True)

    data = run(config, command, log)
    return 1 if data["problems"] else 0
