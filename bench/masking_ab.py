"""What the client frame check (aiohttp_spry/websocket/masking.py) costs on the echo benchmark.

``python -m bench.masking_ab [--rounds 7]``: three spry echo servers (check on, check
off, check on again) pinned to one CPU, the client on the other. Each round runs
two head-to-heads with the 64 connections split between two servers: on vs off
(A/B) and on vs on (A/A, the noise floor), the server order alternating by round.
Every round starts fresh server processes. Ratios are taken per round and
summarised by their median. Then a micro-benchmark:
the check's own cost per ``feed_data()`` call, in front of aiohttp's real reader.

``python -m bench.masking_ab --serve on|off --port PORT`` runs one server.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from bench import client
from bench.client import Payload
from bench.system import pin, process_cpu
from tests.support.procs import free_port, spawn_listening, stop_process
from tests.support.wire import TEXT, client_frame

CONNECTIONS = 64
WINDOW = 32


def serve(check: str, port: int) -> None:
    if check == "off":
        from aiohttp_spry.websocket import session

        async def no_check(
            request: web.Request, response: web.WebSocketResponse, transport: object
        ) -> None:
            await response.prepare(request)

        # Only in this benchmark's own server process: the same server, no check.
        setattr(session, "prepare_checked", no_check)  # noqa: B010
    from bench.servers.common import run_aiohttp
    from bench.servers.spry_aiohttp import make_app

    run_aiohttp(make_app(), port)


def head_to_head(ports: list[int], pids: list[int], seconds: float) -> list[tuple[float, float]]:
    """(echoes per second, server CPU µs per echo) of each server, under the same load."""
    probes: list[Callable[[], float]] = [functools.partial(process_cpu, pid) for pid in pids]
    results = client.echo_load(
        ports,
        Payload.text(32, WINDOW),
        connections=CONNECTIONS // len(ports),
        warmup=0.75,
        duration=seconds,
        probes=probes,
    )
    return [(result.rate, result.server_cpu / result.count * 1e6) for result in results]


def micro(trials: int = 300) -> dict[str, float]:
    """ns of check per 32-byte text frame fed to aiohttp's real reader, by frames per read.

    Short trials, reader alone and behind the check alternating, best of ``trials``:
    the least disturbed figure on a shared machine.
    """
    import asyncio

    from aiohttp._websocket.reader import WebSocketDataQueue, WebSocketReader

    from aiohttp_spry.websocket.masking import _FrameCheck

    class Protocol:
        _reading_paused = False

        def pause_reading(self) -> None: ...

        def resume_reading(self) -> None: ...

    loop = asyncio.new_event_loop()
    queue: Any = WebSocketDataQueue(Protocol(), 1 << 30, loop=loop)  # type: ignore[arg-type]
    reader = WebSocketReader(queue, 4 << 20, compress=False, decode_text=True)
    out: dict[str, float] = {}
    for per_read in (1, 8, 32):
        data = client_frame(TEXT, Payload.text(32, 1).data) * per_read
        calls = max(1, 1024 // per_read)
        best: dict[str, float] = {}
        for _ in range(trials):
            for name, target in (("reader", reader), ("check", _FrameCheck(reader, queue))):
                feed = target.feed_data
                started = time.perf_counter_ns()
                for _ in range(calls):
                    feed(data)
                elapsed = (time.perf_counter_ns() - started) / (calls * per_read)
                queue._buffer.clear()
                best[name] = min(best.get(name, float("inf")), elapsed)
        out[f"reader alone, {per_read} frames/read"] = best["reader"]
        out[f"check, {per_read} frames/read"] = best["check"] - best["reader"]
    loop.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.masking_ab")
    parser.add_argument("--serve", choices=["on", "off"])
    parser.add_argument("--port", type=int)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=2.5)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return

    cpus = sorted(os.sched_getaffinity(0))
    server_cpus, client_cpus = ({cpus[0]}, {cpus[1]}) if len(cpus) >= 2 else (None, None)
    pin(0, client_cpus)
    workdir = Path(tempfile.mkdtemp(prefix="spry-masking-ab-"))
    ab: list[float] = []
    ab_cpu: list[float] = []
    aa: list[float] = []
    for round_no in range(args.rounds):
        # Fresh processes every round: one process can be a few percent faster than
        # another for reasons of its own (memory layout, hash seed).
        procs: dict[str, subprocess.Popen[bytes]] = {}
        ports: dict[str, int] = {}
        try:
            for name, check in (("on", "on"), ("off", "off"), ("on2", "on")):
                ports[name] = port = free_port()
                command = [sys.executable, "-m", "bench.masking_ab", "--serve", check]
                command += ["--port", str(port)]
                log = workdir / f"{name}-{round_no}.log"
                procs[name] = spawn_listening(
                    command, port, log, cpus=server_cpus, timeout=20, label=name
                )
            for a, b in (("on", "off"), ("on", "on2")):
                order = [a, b] if round_no % 2 == 0 else [b, a]
                figures = head_to_head(
                    [ports[n] for n in order], [procs[n].pid for n in order], args.seconds
                )
                measured = dict(zip(order, figures, strict=True))
                (rate_a, cpu_a), (rate_b, cpu_b) = measured[a], measured[b]
                if b == "off":
                    ab.append(rate_a / rate_b)
                    ab_cpu.append(cpu_a / cpu_b)
                else:
                    aa.append(rate_a / rate_b)
                print(
                    f"round {round_no} {a}/{b} (first: {order[0]}): "
                    f"{rate_a:,.0f} vs {rate_b:,.0f} echoes/s = {rate_a / rate_b:.4f}; "
                    f"server CPU/echo {cpu_a:.2f} vs {cpu_b:.2f} µs",
                    flush=True,
                )
        finally:
            for proc in procs.values():
                stop_process(proc)

    def summary(values: list[float]) -> str:
        return (
            f"median {statistics.median(values):.4f} (min {min(values):.4f}, max {max(values):.4f})"
        )

    print(f"A/B on/off echoes/s ratio:      {summary(ab)}")
    print(f"A/B on/off CPU-per-echo ratio:  {summary(ab_cpu)}")
    print(f"A/A on/on2 echoes/s ratio:      {summary(aa)}")
    for name, ns in micro().items():
        print(f"micro, ns per 32-byte frame: {name:<28} {ns:7.1f}")


if __name__ == "__main__":
    main()
