"""One client process of ``python -m bench.scale``: thousands of WebSocket sessions, each a
bare non-blocking socket on the asyncio loop (no transport, a few KiB per session), frames
decoded by ``tests.support.wire``.

``python -m bench.scale.client --host H --port P --count N --topics T --first F
--source ADDRESS --output FILE``: opens N sessions to ``ws://H:P/sub/t{(F + i) % T}``
from the local address ``ADDRESS`` (a loopback address of its own, so many processes
never share one ephemeral-port range), at most ``--concurrency`` handshakes at a time,
each retried with exponential backoff, all within ``--timeout`` seconds. It prints one
JSON line ``{"ready": ..., "failed": ..., "retries": ..., "errors": [...]}`` and then
reads commands on stdin, one a line:

- ``mark`` forgets what was received so far (the start of a measured window);
- ``collect`` writes what was received to ``--output`` as JSON and prints ``{"written": ...}``:
  for each text message ``"ORIGIN SEQ TIME_NS"`` or ``"ID"``: per origin, the count and
  the latencies (the kernel's receive time of the segment that carried it, from
  ``SO_TIMESTAMPNS``, minus the stamp, in µs, at most ``--keep`` of them, evenly
  sampled); for each ``ID`` message, every session's receive time in seconds (both
  CLOCK_REALTIME, one clock for the whole machine). A kernel stamp says when the bytes
  arrived, not when this process got round to reading them: thousands of sessions on
  one client core do not inflate the figure;
- ``exit`` (or end of input) closes every session and exits.

Everything else a session receives (pings are answered) or an unexpected close is
counted as an error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import socket
import struct
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from aiohttp_spry import raise_open_files_limit
from bench.fanout.client import SO_TIMESTAMPNS
from bench.ws import check_101
from tests.support.wire import Opcode, client_frame, handshake_request, parse_frame

MAX_ERRORS = 20
READ_SIZE = 1 << 16
#: Each segment's kernel receive time (CLOCK_REALTIME), as in bench.fanout's latency client.
TIMESPEC = struct.Struct("qq")
ANCILLARY = socket.CMSG_SPACE(TIMESPEC.size)


class Stats:
    """What every session of this process saw."""

    def __init__(self) -> None:
        self.counts: dict[int, int] = defaultdict(int)
        self.latencies: dict[int, list[int]] = defaultdict(list)
        self.reached: dict[str, list[float]] = defaultdict(list)
        self.errors: list[str] = []
        self.error_count = 0
        self.closed = 0
        self.unstamped = 0

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


class Session:
    """One WebSocket on a bare non-blocking socket: the handshake through the loop's socket
    calls, then a reader that takes each segment's kernel receive time with it."""

    def __init__(self, sock: socket.socket, stats: Stats) -> None:
        self.sock, self.stats = sock, stats
        self.buffer = bytearray()
        self.open = True

    def readable(self) -> None:
        try:
            data, ancillary, _, _ = self.sock.recvmsg(READ_SIZE, ANCILLARY)
        except BlockingIOError:
            return
        except OSError as error:
            self.stats.error(f"recv: {error}")
            data, ancillary = b"", []
        if not data:
            self.stats.closed += 1
            self.close()
            return
        arrived = 0
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                seconds, nanoseconds = TIMESPEC.unpack(value)
                arrived = seconds * 1_000_000_000 + nanoseconds
        if not arrived:
            self.stats.unstamped += 1
            arrived = time.time_ns()
        self.frames(data, arrived)

    def frames(self, data: bytes, arrived: int) -> None:
        buffer = self.buffer
        buffer += data
        pos = 0
        while (parsed := parse_frame(buffer, pos)) is not None:
            frame, pos = parsed
            if frame.opcode == Opcode.TEXT:
                self.stats.message(frame.payload.decode(), arrived)
            elif frame.opcode == Opcode.PING:
                with contextlib.suppress(OSError):
                    self.sock.send(client_frame(Opcode.PONG, frame.payload))
            elif frame.opcode == Opcode.CLOSE:
                self.stats.error(f"server closed: {frame.close_code} {frame.close_reason}")
                self.close()
                return
            else:
                self.stats.error(f"unexpected frame {frame.opcode!r}")
        del buffer[:pos]

    def close(self) -> None:
        if self.open:
            self.open = False
            with contextlib.suppress(ValueError, RuntimeError):
                asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()


async def open_session(
    args: argparse.Namespace, request: bytes, stats: Stats, timeout: float
) -> Session:
    """One connection and its handshake within ``timeout`` seconds; closed if it fails."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.bind((args.source, 0))
        await asyncio.wait_for(handshake(loop, sock, args, request), timeout)
    except BaseException:
        sock.close()
        raise
    session = Session(sock, stats)
    loop.add_reader(sock.fileno(), session.readable)
    return session


async def handshake(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, args: argparse.Namespace, request: bytes
) -> None:
    await loop.sock_connect(sock, (args.host, args.port))
    await loop.sock_sendall(sock, request)
    head = b""
    while (end := head.find(b"\r\n\r\n")) < 0:
        chunk = await loop.sock_recv(sock, 4096)
        if not chunk or len(head) > 65536:
            raise ConnectionError(f"handshake cut short after {head[:120]!r}")
        head += chunk
    problem = check_101(head[:end])
    if problem is not None:
        raise ConnectionError(f"handshake: {problem}")
    if head[end + 4 :]:
        raise ConnectionError(f"unexpected bytes after the 101: {head[end + 4 : end + 44]!r}")


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
        "unstamped": stats.unstamped,
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
