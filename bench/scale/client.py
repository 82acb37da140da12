"""One client process of ``python -m bench.scale``: thousands of WebSocket sessions, each a
bare ``asyncio.Protocol`` (a few KiB per session), frames decoded by ``tests.support.wire``.

``python -m bench.scale.client --host H --port P --count N --topics T --first F
--source ADDRESS --output FILE``: opens N sessions to ``ws://H:P/sub/t{(F + i) % T}``
from the local address ``ADDRESS`` (a loopback address of its own, so many processes
never share one ephemeral-port range), at most ``--concurrency`` handshakes at a time,
each retried with exponential backoff, all within ``--timeout`` seconds. It prints one
JSON line ``{"ready": ..., "failed": ..., "retries": ..., "errors": [...]}`` and then
reads commands on stdin, one a line:

- ``mark`` forgets what was received so far (the start of a measured window);
- ``collect`` writes what was received to ``--output`` as JSON and prints ``{"written": ...}``:
  for each text message ``"ORIGIN SEQ STAMP_NS"`` or ``"ID"``: per origin, the count and
  the latencies (this process's ``time.monotonic_ns()`` at receipt minus the stamp, in
  µs, at most ``--keep`` of them, evenly sampled); for each ``ID`` message, every
  session's monotonic receive time (``time.monotonic`` is one clock for the whole
  machine on Linux);
- ``exit`` (or end of input) closes every session and exits.

Everything else a session receives (pings are answered) or an unexpected close is
counted as an error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from aiohttp_spry import raise_open_files_limit
from bench.ws import check_101
from tests.support.wire import Opcode, client_frame, handshake_request, parse_frame

MAX_ERRORS = 20


class Stats:
    """What every session of this process saw."""

    def __init__(self) -> None:
        self.counts: dict[int, int] = defaultdict(int)
        self.latencies: dict[int, list[int]] = defaultdict(list)
        self.reached: dict[str, list[float]] = defaultdict(list)
        self.errors: list[str] = []
        self.error_count = 0
        self.closed = 0

    def error(self, what: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(what)

    def message(self, text: str, now_ns: int) -> None:
        origin, _, rest = text.partition(" ")
        if not rest:  # an ID of one publish to all
            self.reached[text].append(now_ns / 1e9)
            return
        stamp = int(rest.rpartition(" ")[2])
        key = int(origin)
        self.counts[key] += 1
        self.latencies[key].append((now_ns - stamp) // 1000)

    def mark(self) -> None:
        self.counts.clear()
        self.latencies.clear()
        self.reached.clear()


class Session(asyncio.Protocol):
    """One WebSocket: the handshake, then server frames as they come."""

    def __init__(self, request: bytes, stats: Stats) -> None:
        self.request, self.stats = request, stats
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # A handshake that failed after its wait timed out: nobody is left to look.
        self.upgraded.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.open = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        self.buffer += data
        if not self.open:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            problem = check_101(bytes(self.buffer[:end]))
            del self.buffer[: end + 4]
            if problem is not None:
                if not self.upgraded.done():
                    self.upgraded.set_exception(ConnectionError(f"handshake: {problem}"))
                self.close()
                return
            self.open = True
            self.upgraded.set_result(None)
        pos = 0
        while (parsed := parse_frame(self.buffer, pos)) is not None:
            frame, pos = parsed
            if frame.opcode == Opcode.TEXT:
                self.stats.message(frame.payload.decode(), now)
            elif frame.opcode == Opcode.PING:
                assert self.transport is not None
                self.transport.write(client_frame(Opcode.PONG, frame.payload))
            elif frame.opcode == Opcode.CLOSE:
                self.stats.error(f"server closed: {frame.close_code} {frame.close_reason}")
                self.close()
                break
            else:
                self.stats.error(f"unexpected frame {frame.opcode!r}")
        del self.buffer[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.upgraded.done():
            self.upgraded.set_exception(exc or ConnectionError("closed during the handshake"))
        elif self.open:
            self.stats.closed += 1
        self.open = False

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def open_session(
    args: argparse.Namespace, request: bytes, stats: Stats, timeout: float
) -> Session:
    """One connection and its handshake within ``timeout`` seconds; closed if it fails."""
    loop = asyncio.get_running_loop()
    made: list[Session] = []

    def protocol() -> Session:
        made.append(Session(request, stats))
        return made[0]

    try:
        _, session = await asyncio.wait_for(
            loop.create_connection(
                protocol,
                args.host,
                args.port,
                local_addr=(args.source, 0),
            ),
            timeout,
        )
        await asyncio.wait_for(asyncio.shield(session.upgraded), timeout)
    except BaseException:
        for one in made:  # connected, but the handshake failed or timed out
            one.close()
        raise
    return session


async def connect_all(args: argparse.Namespace, stats: Stats) -> tuple[list[Session], int, int]:
    """Open ``args.count`` sessions: bounded concurrency, retries with backoff, one deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + args.timeout
    gate = asyncio.Semaphore(args.concurrency)
    sessions: list[Session] = []
    retries = failed = 0
    jitter = random.Random(args.first).uniform

    async def one(index: int) -> None:
        nonlocal retries, failed
        path = f"/sub/t{(args.first + index) % args.topics}"
        request = handshake_request(f"{args.host}:{args.port}", path)
        delay, last = 0.05, "no attempt before the deadline"
        for attempt in range(args.attempts):
            if attempt:
                retries += 1
                await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
                delay = min(delay * 2, 2.0) * jitter(0.8, 1.2)
            left = deadline - loop.time()
            if left <= 0:
                stats.error(f"session {index}: not open within {args.timeout} s: {last}")
                break
            async with gate:
                try:
                    opened = await open_session(args, request, stats, min(left, 30.0))
                except (OSError, asyncio.TimeoutError) as error:
                    last = f"{type(error).__name__}: {error}"
                    continue
            sessions.append(opened)
            return
        else:
            stats.error(f"session {index}: gave up after {args.attempts} attempts: {last}")
        failed += 1

    await asyncio.gather(*(one(i) for i in range(args.count)))
    return sessions, retries, failed


def collect(stats: Stats, keep: int) -> dict[str, Any]:
    latencies = {}
    for origin, values in stats.latencies.items():
        step = max(1, len(values) // keep)
        latencies[str(origin)] = values[::step]
    return {
        "counts": {str(k): v for k, v in stats.counts.items()},
        "latencies_us": latencies,
        "reached": dict(stats.reached),
        "errors": stats.errors,
        "error_count": stats.error_count,
        "closed": stats.closed,
    }


def say(line: dict[str, Any]) -> None:
    print(json.dumps(line), flush=True)


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale.client", description=__doc__)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--topics", type=int, default=1)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--source", default="127.0.0.1")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--attempts", type=int, default=6)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--keep", type=int, default=200_000)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)
    raise_open_files_limit()
    stats = Stats()
    sessions, retries, failed = await connect_all(args, stats)
    say({"ready": len(sessions), "failed": failed, "retries": retries, "errors": stats.errors})
    loop = asyncio.get_running_loop()
    while command := (await loop.run_in_executor(None, sys.stdin.readline)).strip():
        if command == "mark":
            stats.mark()
            say({"marked": True})
        elif command == "collect":
            args.output.write_text(json.dumps(collect(stats, args.keep)))
            say({"written": str(args.output)})
        elif command == "exit":
            break
        else:
            say({"error": f"unknown command {command!r}"})
    for session in sessions:
        session.close()


if __name__ == "__main__":
    asyncio.run(main())
