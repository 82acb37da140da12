"""``python -m bench``: every figure on every server, over rounds; writes bench/RESULTS.md.

Each round starts fresh server processes and measures each figure on every server in
turn (order reversed on odd rounds: ABBA cancels a linear drift), then head-to-head
(spry and raw at once) and the A/A control (raw against a second raw). Ratios to raw
aiohttp are taken within a round, then summarised.
"""

from __future__ import annotations

import json
import re
import resource
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from bench import harness, render
from bench.client import (
    HELLO_BODY,
    HELLO_PATH,
    Payload,
    Result,
    echo_load,
    handshake_load,
    hold_idle,
)
from bench.harness import Option
from bench.profiling import Recorder, parse_collapsed, py_spy
from bench.system import HOST, ROOT, CpuTimes, Proc, versions
from bench.ws import Totals

#: kind -> (server module, label in the results)
KINDS = {
    "raw": ("bench.servers.raw_aiohttp", "raw aiohttp"),
    "spry": ("bench.servers.spry_aiohttp", "aiohttp_spry"),
    "starlette": ("bench.servers.starlette_uvicorn", "Starlette on uvicorn"),
    "websockets": ("bench.servers.websockets_asyncio", "websockets (asyncio server)"),
}
BASELINE, TWIN = "raw", "raw2"  # TWIN: the second raw aiohttp process of the A/A control
H2H, AA = "h2h_", "aa_"  # figure prefixes: head-to-head, and the A/A control
PROFILED = ("echo_text_32", "handshakes")


@attrs.define
class Config(harness.Settings):
    warmup: float = 0.75
    duration: float = 2.5
    echo_connections: int = 64
    echo_window: int = 32
    handshake_concurrency: int = 64
    http_connections: int = 64
    idle_sessions: int = 2000
    memory_rounds: int = 2
    profile_seconds: float = 5.0
    gc_seconds: float = 1.5
    sample_every: int = 64
    servers: tuple[str, ...] = tuple(KINDS)
    figures: tuple[str, ...] = ("echo_text_32", "echo_binary_4096", "handshakes", "http")
    head_to_head: bool = True


QUICK: dict[str, Any] = dict(
    rounds=2, warmup=0.3, duration=0.8, idle_sessions=500, memory_rounds=1, profile_seconds=1.0,
    gc_seconds=0.75, retries=1, quiet_wait=3.0, noise_budget=15.0,
)  # fmt: skip


@attrs.frozen
class Sample:
    """One measurement of one figure on one server in one round."""

    figure: str
    server: str
    round: int
    value: float
    client_share: float = 0.0
    server_share: float = 0.0
    cpu_busy: dict[str, float] = attrs.Factory(dict)
    detail: dict[str, Any] = attrs.Factory(dict)

    def other(self) -> float:
        """Cores busy during the window besides the servers and the client."""
        if not self.cpu_busy:
            return 0.0
        servers = self.server_share + float(self.detail.get("peer_server_share", 0.0))
        return sum(self.cpu_busy.values()) - self.client_share - servers


def server(kind: str, cpus: set[int] | None, workdir: Path, *args: str, name: str = "") -> Proc:
    module, label = KINDS[kind]
    return Proc(
        module, f"{label} ({name})" if name else label, cpus, workdir, *args, name=name or kind
    )


def payload(figure: str, window: int) -> Payload:
    if figure == "echo_text_32":
        return Payload.text(32, window)
    return Payload.binary(4096, window)


class Echo(harness.Harness):
    config: Config

    def __init__(self, config: Config, log: harness.Log) -> None:
        super().__init__(config, log, "spry-bench-")
        self.config = config
        self.samples: list[Sample] = []

    def server(self, kind: str, *args: str, name: str = "") -> Proc:
        return server(kind, self.server_cpus, self.workdir, *args, name=name)

    def measure(self, figure: str, servers: list[Proc], round_no: int) -> None:
        """One figure on one server (or head-to-head on two at once), measured again
        (bounded) when a neighbour disturbed it."""
        samples, attempts, idle = self.until_quiet(
            figure, lambda: self.measure_once(figure, servers, round_no), lambda s: s[0].other()
        )
        for s in samples:
            s.detail.update(attempts=attempts, idle_busy=idle)
            self.log(
                f"  {s.figure:<21} {s.server:<10} {s.value:>10.0f}/s  client {s.client_share:4.0%}"
                f"  server {s.server_share:4.0%}  other {s.other():.2f}"
            )
        self.samples += samples

    def measure_once(self, figure: str, servers: list[Proc], round_no: int) -> list[Sample]:
        c = self.config
        workload = figure.removeprefix(H2H).removeprefix(AA)
        share = len(servers)  # head-to-head, the servers split the load between them
        ports = [s.port for s in servers]
        if workload == "http":
            results = self.wrk(figure, servers)
        elif workload == "handshakes":
            results = handshake_load(
                ports,
                concurrency=c.handshake_concurrency // share,
                warmup=c.warmup,
                duration=c.duration,
                probes=[s.cpu for s in servers],
            )
        else:
            results = echo_load(
                ports,
                payload(workload, c.echo_window),
                connections=c.echo_connections // share,
                warmup=c.warmup,
                duration=c.duration,
                sample_every=c.sample_every,
                probes=[s.cpu for s in servers],
            )
        samples = []
        total_share = sum(r.server_cpu / r.seconds for r in results)
        for proc, result in zip(servers, results, strict=True):
            self.check(figure, proc, result)
            detail = {"count": result.count, "seconds": result.seconds, **result.extra}
            detail["verified"] = result.totals.verified
            detail["peer_server_share"] = total_share - result.server_cpu / result.seconds
            shares = result.client_cpu / result.seconds, result.server_cpu / result.seconds
            samples.append(
                Sample(figure, proc.name, round_no, result.rate, *shares, result.cpu_busy, detail)
            )
        return samples

    def check(self, figure: str, proc: Proc, result: Result) -> None:
        t = result.totals
        if t.error_count:
            self.problems.append(
                f"{figure} on {proc.label}: {t.error_count} error(s), "
                f"first: {'; '.join(t.errors[:3])}"
            )
        if "echo_" in figure and t.verified == 0:
            self.problems.append(f"{figure} on {proc.label}: no echo was decoded and checked")

    def wrk(self, figure: str, servers: list[Proc]) -> list[Result]:
        """``wrk -t1`` on each server, all at once (head-to-head); client CPU is wrk's."""
        c = self.config
        urls = [f"http://{HOST}:{s.port}{HELLO_PATH}" for s in servers]
        connections = c.http_connections // len(servers)
        run_wrk(urls, connections, max(1, round(c.warmup)))
        seconds = max(1, round(c.duration))
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus0, t0, servers0 = CpuTimes.read(), time.perf_counter(), [s.cpu() for s in servers]
        outs = run_wrk(urls, connections, seconds)
        elapsed, servers1 = time.perf_counter() - t0, [s.cpu() for s in servers]
        busy = CpuTimes.read().busy_since(cpus0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        wrk_cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        results = []
        for proc, out, s0, s1 in zip(servers, outs, servers0, servers1, strict=True):
            rps, requests, non_2xx, errors = parse_wrk(out)
            if non_2xx or errors:
                self.problems.append(
                    f"{figure} on {proc.label}: {non_2xx} non-2xx responses, "
                    f"socket errors: {errors or 'none'}"
                )
            # wrk's own window gives the rate; CPU shares are over the whole wrk run.
            window = requests / rps if rps else elapsed
            scale = window / elapsed
            cpu = wrk_cpu * scale, (s1 - s0) * scale
            results.append(Result(requests, window, *cpu, Totals(), busy))
        return results

    def measure_memory(self, kind: str, round_no: int) -> None:
        c = self.config
        # The slope over the second half of the sessions: the first half uses up the
        # memory the heap had free at start (what imports and compiling left), which
        # differs between servers and even with .pyc files present or not (±300 B per
        # session over 2,000 when read from the start).
        first = c.idle_sessions // 2
        with self.server(kind) as proc:
            hold_idle(proc.port, 100, 0.1, lambda: 0)  # warm the code paths
            (before, after), result = hold_idle(
                proc.port, c.idle_sessions, 1.0, proc.rss, first=first
            )
        self.check("idle_memory", proc, result)
        counted = c.idle_sessions - first
        detail = {"rss_before": before, "rss_after": after, "sessions": counted}
        self.samples.append(
            Sample("idle_memory", kind, round_no, (after - before) / counted, detail=detail)
        )
        self.log(f"  {'idle_memory':<21} {kind:<10} {self.samples[-1].value:>10.0f} B/session")

    def check_hello(self, servers: list[Proc]) -> dict[str, str]:
        """One plain GET /hello per server: status line, Content-Type and body must match."""
        seen = {}
        for proc in servers:
            status, content_type, body = http_get(proc.port, HELLO_PATH)
            seen[proc.name] = f"{status} | {content_type} | {body!r}"
            if not status.endswith("200 OK") or body != HELLO_BODY.encode():
                self.problems.append(f"GET {HELLO_PATH} on {proc.label}: {status} {body!r}")
        return seen

    def run(self) -> dict[str, Any]:
        c = self.config
        responses: dict[str, str] = {}
        for round_no in range(c.rounds):
            order = list(c.servers)[:: -1 if round_no % 2 else 1]
            self.log(f"round {round_no + 1}/{c.rounds}: order {', '.join(order)}")
            procs = {kind: self.server(kind) for kind in order}
            twin = self.server(BASELINE, name=TWIN)
            try:
                for proc in [*procs.values(), *([twin] if c.head_to_head else [])]:
                    proc.start()
                if round_no == 0:
                    responses = self.check_hello(list(procs.values()))
                for figure in c.figures:
                    for kind in order:
                        self.measure(figure, [procs[kind]], round_no)
                if c.head_to_head and "spry" in procs:
                    flip = -1 if round_no % 2 else 1
                    for figure in c.figures:
                        self.measure(
                            H2H + figure, [procs[BASELINE], procs["spry"]][::flip], round_no
                        )
                        self.measure(AA + figure, [procs[BASELINE], twin][::flip], round_no)
            finally:
                for proc in [*procs.values(), twin]:
                    proc.stop()
            if round_no < c.memory_rounds:
                for kind in order:
                    self.measure_memory(kind, round_no)
        versions_found = versions("starlette", "uvicorn", "httptools", "websockets", "py-spy")
        versions_found["wrk"] = wrk_version()
        return {
            "samples": self.samples,
            "responses": responses,
            "profile": self.profile(),
            "gc": self.gc_counts(),
            "versions": versions_found,
        }

    def load(self, workload: str, port: int, seconds: float) -> Result:
        """Unmeasured load, for the profile and GC runs."""
        c = self.config
        if workload == "handshakes":
            return handshake_load(
                [port], concurrency=c.handshake_concurrency, warmup=0.2, duration=seconds
            )[0]
        return echo_load(
            [port],
            payload(workload, c.echo_window),
            connections=c.echo_connections,
            warmup=0.2,
            duration=seconds,
            sample_every=c.sample_every,
        )[0]

    def profile(self) -> dict[str, dict[str, Any]]:
        """py-spy on the Spry server and on raw aiohttp, under echo and under handshakes."""
        c = self.config
        if c.profile_seconds <= 0:
            return {}
        if py_spy() is None:
            self.notes.append("py-spy is not installed: no profile (pip install -e '.[bench]')")
            return {}
        results: dict[str, dict[str, Any]] = {}
        for workload in PROFILED:
            for kind in ("spry", BASELINE):
                self.log(f"profile: {kind}, {c.profile_seconds:g} s of {workload} under py-spy")
                output = c.output.parent / f"profile-{workload}-{kind}.collapsed.txt"
                with self.server(kind) as proc:
                    recorder = Recorder(proc.pid, c.profile_seconds, output)
                    try:
                        time.sleep(0.5)  # attach
                        result = self.load(workload, proc.port, c.profile_seconds + 0.5)
                        text = recorder.wait(timeout=c.profile_seconds + 30)
                    finally:
                        recorder.stop()
                self.check(f"profile ({workload})", proc, result)
                results.setdefault(workload, {})[kind] = {
                    "profile": parse_collapsed(text, ROOT),
                    "rate": result.rate,
                }
        return results

    def gc_counts(self) -> dict[str, dict[str, dict[str, float]]]:
        """Objects the cyclic GC had to free, per operation, on each server (untimed runs)."""
        results: dict[str, dict[str, dict[str, float]]] = {}
        for workload in PROFILED:
            for kind in self.config.servers:
                path = self.workdir / f"gc-{workload}-{kind}.json"
                with self.server(kind, "--gc-stats", str(path)) as proc:
                    result = self.load(workload, proc.port, self.config.gc_seconds)
                self.check(f"GC run ({workload})", proc, result)
                if not path.exists():
                    self.notes.append(f"{proc.label} wrote no GC statistics: {proc.log()}")
                    continue
                stats = json.loads(path.read_text())
                done = result.extra["total"]
                results.setdefault(workload, {})[kind] = {
                    "operations": done,
                    "collected_per_op": sum(stats["collected"]) / done,
                    "gc_us_per_op": sum(stats["seconds"]) / done * 1e6,
                    "runs": sum(stats["runs"]),
                    "full_runs": stats["runs"][2],
                }
        return results


def run_wrk(urls: list[str], connections: int, seconds: int) -> list[str]:
    """``wrk -t1`` on each URL, all at the same time; their outputs."""
    exe = shutil.which("wrk")
    if exe is None:
        raise FileNotFoundError("wrk is not installed (apt-get install wrk)")
    command = [exe, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s"]
    procs = [
        subprocess.Popen(
            [*command, url],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for url in urls
    ]
    outs = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=seconds + 60)
            if proc.returncode:
                raise RuntimeError(f"wrk exited with {proc.returncode}: {err}")
            outs.append(out)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
    return outs


def parse_wrk(out: str) -> tuple[float, int, int, str]:
    """Requests/s, requests, non-2xx responses and socket errors from wrk's output."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    requests = re.search(r"(\d+) requests in", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:(.*)", out)
    if rps is None or requests is None:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    return (
        float(rps[1]),
        int(requests[1]),
        int(non_2xx[1]) if non_2xx else 0,
        errors[1].strip() if errors else "",
    )


def wrk_version() -> str:
    exe = shutil.which("wrk")
    if exe is None:
        return "not installed"
    # wrk prints its version in the usage text and exits 1.
    out = subprocess.run([exe, "-v"], capture_output=True, text=True, timeout=10, check=False)
    first = (out.stdout or out.stderr).strip().splitlines()
    return first[0].split("Copyright")[0].strip() if first else "unknown"


def http_get(port: int, path: str) -> tuple[str, str, bytes]:
    """A plain HTTP/1.1 GET with ``Connection: close``: status line, Content-Type, body."""
    with socket.create_connection((HOST, port), timeout=5) as sock:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.lower().split(":", 1) for line in lines if ":" in line)
    return status, fields.get("content-type", "").strip(), body


def servers_option(text: str) -> tuple[str, ...]:
    kinds = harness.comma_list(text)
    unknown = [kind for kind in kinds if kind not in KINDS]
    if unknown:
        raise ValueError(f"unknown servers {unknown}; choose from {sorted(KINDS)}")
    return tuple(dict.fromkeys([BASELINE, *kinds]))


OPTIONS = [
    Option("--rounds", "rounds of A/B alternation", int),
    Option("--duration", "measured seconds per figure and server", float),
    Option("--warmup", "unmeasured seconds before each window", float),
    Option("--servers", f"a subset of {','.join(KINDS)} (raw is always included)", servers_option),
    Option("--idle-sessions", "idle WebSockets for the memory figure", int),
    Option("--output", "where to write the Markdown results", Path),
]


def main(argv: list[str] | None = None, log: Callable[[str], None] = harness.printer) -> int:
    config, _, command = harness.parse(
        argv,
        "python -m bench",
        "aiohttp_spry against raw aiohttp and its peers; writes bench/RESULTS.md.",
        Config,
        QUICK,
        OPTIONS,
    )
    config.memory_rounds = min(config.memory_rounds, config.rounds)
    bench = Echo(config, log)
    json_output = config.output.with_name(config.output.stem.lower() + ".json")
    data = harness.run(bench, command, bench.run, render.render, json_output)
    return 1 if data["problems"] else 0
