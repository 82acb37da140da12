"""``python -m bench``: every figure for every server, A/B alternated over rounds.

Each round starts a fresh process per server (pinned to the server CPU), then
runs each figure on every server in turn before the next figure, so servers
compared with each other are measured seconds apart; odd rounds reverse the
server order (ABBA), which cancels a linear drift of the machine. The idle
memory figure uses one more fresh process per server. Ratios to raw aiohttp
are taken per round (same round, same conditions), then summarised.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import resource
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from bench import client, report
from bench.frames import (
    HELLO_BODY,
    HELLO_PATH,
    OP_BINARY,
    OP_TEXT,
    Payload,
    binary_payload,
    text_payload,
)
from bench.procs import ROOT, Server, cpu_count, pin
from bench.profiling import Recorder, parse_collapsed, py_spy
from bench.servers import HOST, KINDS
from bench.system import CpuTimes, git_revision, machine_facts, package_versions, revision_change

HERE = Path(__file__).resolve().parent
BASELINE = "raw"
#: Figure name prefix of the head-to-head measurements (spry and raw at the same time).
H2H = "h2h_"
#: The A/A control: raw aiohttp head-to-head with a second raw aiohttp process.
AA = "aa_"
TWIN = "raw2"
#: The workloads profiled with py-spy and counted for cyclic garbage.
PROFILED = ("echo_text_32", "handshakes")


@attrs.define
class Config:
    rounds: int = 5
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
    servers: tuple[str, ...] = ("raw", "spry", "starlette", "websockets")
    figures: tuple[str, ...] = ("echo_text_32", "echo_binary_4096", "handshakes", "http")
    head_to_head: bool = True
    pin: bool = True
    output: Path = HERE / "RESULTS.md"
    # Noisy neighbours: before each measurement wait (bounded) for the CPUs to
    # be nearly idle, and measure again when a window was disturbed. "Other"
    # is CPU busy time of the whole machine minus the server's and client's;
    # on a quiet machine it stays under 0.1 core.
    quiet_below: float = 0.25
    quiet_wait: float = 15.0
    max_other: float = 0.3
    retries: int = 2
    noise_budget: float = 180.0


QUICK = {
    "rounds": 2,
    "warmup": 0.3,
    "duration": 0.8,
    "idle_sessions": 500,
    "memory_rounds": 1,
    "profile_seconds": 1.0,
    "gc_seconds": 0.75,
    "retries": 1,
    "quiet_wait": 3.0,
    "noise_budget": 15.0,
}


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
        """Cores busy during the window besides the servers and the client processes."""
        if not self.cpu_busy:
            return 0.0
        servers = self.server_share + self.detail.get("peer_server_share", 0.0)
        return sum(self.cpu_busy.values()) - self.client_share - servers


def with_peers(samples: list[Sample]) -> list[Sample]:
    """Note, on each sample of a head-to-head measurement, the other servers' CPU share."""
    if len(samples) < 2:
        return samples
    total = sum(s.server_share for s in samples)
    return [
        attrs.evolve(s, detail={**s.detail, "peer_server_share": total - s.server_share})
        for s in samples
    ]


class Probe:
    """Called by the client at both ends of its window: server CPU, plus /proc/stat."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.readings: list[CpuTimes] = []

    def __call__(self) -> float:
        self.readings.append(CpuTimes.read())
        return self.server.cpu()

    def busy(self) -> dict[str, float]:
        if len(self.readings) < 2:
            return {}
        return self.readings[-1].busy_since(self.readings[-2])


def payload_for(figure: str, window: int) -> Payload:
    if figure == "echo_text_32":
        return Payload(figure, OP_TEXT, text_payload(32), window)
    if figure == "echo_binary_4096":
        return Payload(figure, OP_BINARY, binary_payload(4096), window)
    raise ValueError(figure)


class Harness:
    def __init__(self, config: Config, log: Callable[[str], None]) -> None:
        self.config = config
        self.log = log
        ncpu = cpu_count()
        cpus = sorted(os.sched_getaffinity(0))
        if config.pin and ncpu >= 2:
            self.server_cpus: set[int] | None = {cpus[0]}
            self.client_cpus: set[int] | None = {cpus[1]}
        else:
            self.server_cpus = self.client_cpus = None
        self.workdir = Path(tempfile.mkdtemp(prefix="spry-bench-"))
        self.samples: list[Sample] = []
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.noise_spent = 0.0

    # one figure on one server

    def wait_quiet(self) -> float:
        """Wait (at most ``quiet_wait`` s, within what is left of the noise budget) for the
        machine to go idle; our own servers are idle between measurements."""
        c = self.config
        started = time.monotonic()
        while True:
            before = CpuTimes.read()
            time.sleep(0.2)
            busy = sum(CpuTimes.read().busy_since(before).values())
            waited = time.monotonic() - started
            if (
                busy < c.quiet_below
                or waited > c.quiet_wait
                or self.noise_spent + waited > c.noise_budget
            ):
                self.noise_spent += time.monotonic() - started
                return busy

    def measure(self, figure: str, servers: list[Server], round_no: int) -> list[Sample]:
        """One figure on one server (or, head-to-head, on two at once), measured again
        (bounded) when a neighbour disturbed it."""
        c = self.config
        attempts = 0
        while True:
            attempts += 1
            idle_busy = self.wait_quiet()
            started = time.monotonic()
            samples = self.measure_once(figure, servers, round_no)
            other = samples[0].other()
            if other <= c.max_other or attempts > c.retries or self.noise_spent >= c.noise_budget:
                break
            self.noise_spent += time.monotonic() - started
            self.log(
                f"  {figure:<21} {'+'.join(s.kind for s in servers):<10} disturbed "
                f"({other:.2f} cores of other CPU use); measuring again"
            )
        extra = {"attempts": attempts, "idle_busy": idle_busy}
        return [attrs.evolve(s, detail={**s.detail, **extra}) for s in samples]

    def measure_once(self, figure: str, servers: list[Server], round_no: int) -> list[Sample]:
        c = self.config
        workload = figure.removeprefix(H2H).removeprefix(AA)
        # Head-to-head, the servers split the load (and the server CPU) between them.
        share = len(servers)
        probes: list[Callable[[], float]] = [Probe(server) for server in servers]
        if workload == "http":
            return self.measure_http(figure, servers, round_no)
        if workload.startswith("echo_"):
            results = client.echo_load_many(
                [server.port for server in servers],
                payload_for(workload, c.echo_window),
                connections=c.echo_connections // share,
                window=c.echo_window,
                warmup=c.warmup,
                duration=c.duration,
                sample_every=c.sample_every,
                server_cpus=probes,
            )
        elif workload == "handshakes":
            results = client.handshake_load_many(
                [server.port for server in servers],
                concurrency=c.handshake_concurrency // share,
                warmup=c.warmup,
                duration=c.duration,
                server_cpus=probes,
            )
        else:
            raise ValueError(figure)
        busy = probes[0].busy()  # type: ignore[attr-defined]
        samples = []
        for server, result in zip(servers, results, strict=True):
            self.check(figure, server, result)
            w = result.window
            samples.append(
                Sample(
                    figure,
                    server.name,
                    round_no,
                    w.rate,
                    w.client_share,
                    w.server_share,
                    busy,
                    {
                        "count": w.count,
                        "seconds": w.seconds,
                        "verified": result.verified,
                        **result.extra,
                    },
                )
            )
        return with_peers(samples)

    def check(self, figure: str, server: Server, result: client.RunResult) -> None:
        if result.error_count:
            self.problems.append(
                f"{figure} on {server.label}: {result.error_count} error(s), "
                f"first: {'; '.join(result.errors[:3])}"
            )
        if "echo_" in figure and result.verified == 0:
            self.problems.append(f"{figure} on {server.label}: no echo was decoded and checked")

    def measure_http(self, figure: str, servers: list[Server], round_no: int) -> list[Sample]:
        """wrk on each server (on all of them at once, head-to-head)."""
        c = self.config
        urls = [f"http://{HOST}:{server.port}{HELLO_PATH}" for server in servers]
        connections = c.http_connections // len(servers)
        run_wrk(urls, connections, max(1, round(c.warmup)))
        seconds = max(1, round(c.duration))
        before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu0, t0 = CpuTimes.read(), time.perf_counter()
        servers0 = [server.cpu() for server in servers]
        outs = run_wrk(urls, connections, seconds)
        cpu1, t1 = CpuTimes.read(), time.perf_counter()
        servers1 = [server.cpu() for server in servers]
        after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
        wrk_cpu = (after_children.ru_utime - before_children.ru_utime) + (
            after_children.ru_stime - before_children.ru_stime
        )
        elapsed = t1 - t0
        samples = []
        for server, out, s0, s1 in zip(servers, outs, servers0, servers1, strict=True):
            parsed = parse_wrk(out)
            if parsed["non_2xx"] or parsed["socket_errors"]:
                self.problems.append(
                    f"{figure} on {server.label}: {parsed['non_2xx']} non-2xx responses, "
                    f"socket errors: {parsed['socket_errors'] or 'none'}"
                )
            samples.append(
                Sample(
                    figure,
                    server.name,
                    round_no,
                    parsed["rps"],
                    wrk_cpu / elapsed,
                    (s1 - s0) / elapsed,
                    cpu1.busy_since(cpu0),
                    {"requests": parsed["requests"], "seconds": seconds},
                )
            )
        return with_peers(samples)

    def measure_memory(self, kind: str, round_no: int) -> Sample:
        c = self.config
        with Server(kind, self.server_cpus, self.workdir) as server:
            # Warm the code paths (and the allocator) before the baseline reading.
            client.hold_idle(server.port, 100, settle=0.1, measure=lambda: None)
            time.sleep(0.3)
            before = server.rss()
            after, result = client.hold_idle(
                server.port, c.idle_sessions, settle=1.0, measure=server.rss
            )
        self.check("idle_memory", server, result)
        per_session = (after - before) / c.idle_sessions
        return Sample(
            "idle_memory",
            kind,
            round_no,
            per_session,
            detail={
                "rss_before": before,
                "rss_after": after,
                "sessions": c.idle_sessions,
                "open_seconds": result.window.seconds,
            },
        )

    # the whole run

    def record(self, samples: list[Sample]) -> None:
        self.samples.extend(samples)
        for sample in samples:
            self.log(
                f"  {sample.figure:<21} {sample.server:<10} {sample.value:>10.0f}/s  "
                f"client {sample.client_share:4.0%}  server {sample.server_share:4.0%}  "
                f"other {sample.other():.2f}"
            )

    def check_responses(self, servers: list[Server]) -> dict[str, str]:
        """One plain GET /hello per server: status line, Content-Type and body must match."""
        seen = {}
        for server in servers:
            status, content_type, body = http_get(server.port, HELLO_PATH)
            seen[server.kind] = f"{status} | {content_type} | {body!r}"
            if not status.endswith("200 OK") or body != HELLO_BODY.encode():
                self.problems.append(f"GET {HELLO_PATH} on {server.label}: {seen[server.kind]}")
        if len({value.split(" ", 1)[1] for value in seen.values()}) > 1:
            self.notes.append(f"GET {HELLO_PATH} answers differ: {seen}")
        return seen

    def run(self) -> dict[str, Any]:
        c = self.config
        pin(0, self.client_cpus)
        raise_fd_limit()
        started = time.perf_counter()
        responses: dict[str, str] = {}
        for round_no in range(c.rounds):
            order = list(c.servers) if round_no % 2 == 0 else list(reversed(c.servers))
            self.log(f"round {round_no + 1}/{c.rounds}: order {', '.join(order)}")
            servers = {kind: Server(kind, self.server_cpus, self.workdir) for kind in order}
            twin = Server(BASELINE, self.server_cpus, self.workdir, name=TWIN)
            try:
                for server in servers.values():
                    server.start()
                if c.head_to_head:
                    twin.start()
                if round_no == 0:
                    responses = self.check_responses(list(servers.values()))
                for figure in c.figures:
                    for kind in order:
                        self.record(self.measure(figure, [servers[kind]], round_no))
                if c.head_to_head and "spry" in servers:
                    pair = [servers[BASELINE], servers["spry"]]
                    control = [servers[BASELINE], twin]
                    if round_no % 2:
                        pair.reverse()
                        control.reverse()
                    for figure in c.figures:
                        self.record(self.measure(H2H + figure, pair, round_no))
                        # The A/A control: raw aiohttp against a second raw aiohttp
                        # process, to show how much the method itself scatters.
                        self.record(self.measure(AA + figure, control, round_no))
            finally:
                for server in servers.values():
                    server.stop()
                twin.stop()
            if round_no < c.memory_rounds:
                for kind in order:
                    sample = self.measure_memory(kind, round_no)
                    self.samples.append(sample)
                    self.log(f"  {'idle_memory':<17} {kind:<10} {sample.value:>10.0f} B/session")
        profile = self.profile()
        gc_stats = self.gc_diagnostic()
        return {
            "gc": gc_stats,
            "noise_seconds": self.noise_spent,
            "seconds": time.perf_counter() - started,
            "responses": responses,
            "profile": profile,
        }

    def load(self, workload: str, port: int, seconds: float) -> client.RunResult:
        """Unmeasured load for the profile and GC runs."""
        c = self.config
        if workload == "handshakes":
            return client.handshake_load(
                port, concurrency=c.handshake_concurrency, warmup=0.2, duration=seconds
            )
        return client.echo_load(
            port,
            payload_for(workload, c.echo_window),
            connections=c.echo_connections,
            window=c.echo_window,
            warmup=0.2,
            duration=seconds,
            sample_every=c.sample_every,
        )

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
                if kind not in c.servers:
                    continue
                self.log(f"profile: {kind}, {c.profile_seconds:g} s of {workload} under py-spy")
                with Server(kind, self.server_cpus, self.workdir) as server:
                    output = self.workdir / f"profile-{workload}-{kind}.txt"
                    recorder = Recorder(server.pid, c.profile_seconds, output)
                    try:
                        time.sleep(0.5)  # attach
                        result = self.load(workload, server.port, c.profile_seconds + 0.5)
                        text = recorder.wait(timeout=c.profile_seconds + 30)
                    finally:
                        recorder.stop()
                self.check(f"profile ({workload})", server, result)
                results.setdefault(workload, {})[kind] = {
                    "profile": parse_collapsed(text, ROOT),
                    "rate": result.window.rate,
                }
                # Keep the collapsed stacks next to the results, for flame graphs.
                target = c.output.parent / f"profile-{workload}-{kind}.collapsed.txt"
                shutil.copy(output, target)
        return results

    def gc_diagnostic(self) -> dict[str, dict[str, dict[str, float]]]:
        """Objects the cyclic GC had to free, per operation, on each server (not timed)."""
        c = self.config
        results: dict[str, dict[str, dict[str, float]]] = {}
        for workload in PROFILED:
            for kind in c.servers:
                stats_path = self.workdir / f"gc-{workload}-{kind}.json"
                with Server(kind, self.server_cpus, self.workdir, gc_stats=stats_path) as server:
                    result = self.load(workload, server.port, c.gc_seconds)
                self.check(f"GC run ({workload})", server, result)
                if not stats_path.exists():
                    self.notes.append(f"{server.label} wrote no GC statistics: {server.log()}")
                    continue
                stats = json.loads(stats_path.read_text())
                done = result.extra.get("total_echoed", result.verified)
                results.setdefault(workload, {})[kind] = {
                    "operations": done,
                    "collected_per_op": sum(stats["collected"]) / done,
                    "gc_us_per_op": sum(stats["seconds"]) / done * 1e6,
                    "runs": sum(stats["runs"]),
                    "full_runs": stats["runs"][2],
                }
            self.log(
                f"gc: {workload}: "
                + ", ".join(
                    f"{kind} {v['collected_per_op']:.1f} objects/op"
                    for kind, v in results.get(workload, {}).items()
                )
            )
        return results


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run_wrk(urls: list[str], connections: int, seconds: int) -> list[str]:
    """``wrk -t1`` on each URL, all at the same time; their outputs."""
    exe = shutil.which("wrk")
    if exe is None:
        raise FileNotFoundError("wrk is not installed (apt-get install wrk)")
    procs = [
        subprocess.Popen(
            [exe, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", url],
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


def parse_wrk(out: str) -> dict[str, Any]:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    requests = re.search(r"(\d+) requests in", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:(.*)", out)
    if rps is None or requests is None:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    return {
        "rps": float(rps.group(1)),
        "requests": int(requests.group(1)),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": errors.group(1).strip() if errors else "",
    }


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
    lines = head.decode("latin-1").split("\r\n")
    content_type = ""
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-type":
            content_type = value.strip()
    return lines[0], content_type, body


def parse_args(argv: list[str] | None) -> tuple[Config, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark aiohttp_spry against raw aiohttp and its peers; "
        "writes bench/RESULTS.md.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="short rounds (about 2 minutes), a smoke check"
    )
    parser.add_argument("--rounds", type=int, help="rounds of A/B alternation")
    parser.add_argument("--duration", type=float, help="measured seconds per figure and server")
    parser.add_argument("--warmup", type=float, help="unmeasured seconds before each window")
    parser.add_argument(
        "--servers",
        help=f"comma-separated subset of {','.join(KINDS)} (raw is always included)",
    )
    parser.add_argument("--idle-sessions", type=int, help="idle WebSockets for the memory figure")
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and client CPUs")
    parser.add_argument("--output", type=Path, help="where to write the Markdown results")
    args = parser.parse_args(argv)
    config = Config(**QUICK) if args.quick else Config()
    for name in ("rounds", "duration", "warmup", "idle_sessions", "output"):
        value = getattr(args, name)
        if value is not None:
            setattr(config, name, value)
    if args.servers:
        kinds = [kind.strip() for kind in args.servers.split(",") if kind.strip()]
        unknown = [kind for kind in kinds if kind not in KINDS]
        if unknown:
            parser.error(f"unknown servers {unknown}; choose from {sorted(KINDS)}")
        config.servers = tuple(dict.fromkeys([BASELINE, *kinds]))
    config.memory_rounds = min(config.memory_rounds, config.rounds)
    config.pin = not args.no_pin
    return config, args


def main(argv: list[str] | None = None) -> int:
    config, _ = parse_args(argv)
    command = "python -m bench" + (
        " " + shlex.join(sys.argv[1:] if argv is None else argv)
        if (sys.argv[1:] if argv is None else argv)
        else ""
    )

    def log(line: str) -> None:
        print(line, flush=True)

    harness = Harness(config, log)
    started = dt.datetime.now(dt.timezone.utc)
    revision_before = git_revision(ROOT)
    log(
        f"{command}: {config.rounds} round(s) x {len(config.servers)} servers, "
        f"{config.duration:g} s windows; server CPU {harness.server_cpus}, "
        f"client CPU {harness.client_cpus}"
    )
    outcome = harness.run()
    revision_after = git_revision(ROOT)
    changed = revision_change(revision_before, revision_after)
    if changed is not None:
        harness.notes.append(changed)
    context = {
        "command": command,
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "wall_seconds": outcome["seconds"],
        "machine": machine_facts(),
        "versions": package_versions(),
        "revision": revision_before,
        "server_cpus": harness.server_cpus,
        "client_cpus": harness.client_cpus,
        "config": config,
        "responses": outcome["responses"],
        "problems": harness.problems,
        "notes": harness.notes,
        "profile": outcome["profile"],
        "gc": outcome["gc"],
        "noise_seconds": outcome["noise_seconds"],
    }
    markdown = report.render(harness.samples, context)
    config.output.write_text(markdown)
    raw = config.output.with_name(config.output.stem.lower() + ".json")
    raw.write_text(
        json.dumps(
            {
                "command": command,
                "date": context["date"],
                "samples": [attrs.asdict(sample) for sample in harness.samples],
                "problems": harness.problems,
            },
            indent=1,
        )
    )
    log(f"wrote {config.output} and {raw} in {outcome['seconds']:.0f} s")
    for problem in harness.problems:
        log(f"PROBLEM: {problem}")
    if harness.problems:
        log(f"server logs and raw profiles kept in {harness.workdir}")
    else:
        shutil.rmtree(harness.workdir, ignore_errors=True)
    return 1 if harness.problems else 0
