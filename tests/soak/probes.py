"""Measuring a running ``example_app`` from outside and inside, and a raw aborting client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import struct
import time
from dataclasses import dataclass

from tests.e2e.helpers import WELCOME, ServerProcess
from tests.support.polling import eventually
from tests.support.procs import HOST
from tests.support.rawws import raw_exchange
from tests.support.wire import (
    TEXT,
    accept_for,
    build_request,
    handshake_request,
    new_key,
    read_frame,
)

#: How long a settle poll waits for the server to get back to its baseline.
SETTLE_TIMEOUT = 20.0


# -- measuring the server process ----------------------------------------------------------


@dataclass
class Snapshot:
    fds: int
    rss_kib: int
    sessions: int
    tasks: int


def fd_targets(pid: int) -> list[str]:
    """What each open file descriptor of ``pid`` points at (sockets, pipes, files)."""
    targets = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            targets.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except FileNotFoundError:  # closed while listing
            continue
    return targets


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")


async def read_stats(port: int) -> dict[str, int]:
    """``GET /stats`` over a ``Connection: close`` request: open sessions and asyncio tasks."""
    request = build_request("GET", "/stats", {"Host": f"{HOST}:{port}", "Connection": "close"})
    response = await raw_exchange(port, request)
    assert response.status == 200, response
    stats = json.loads(response.body)
    return {"sessions": int(stats["sessions"]), "tasks": int(stats["tasks"])}


async def snapshot(server: ServerProcess) -> Snapshot:
    """The server's fds and RSS, then ``/stats``.

    fds are counted first, so the ``/stats`` connection itself is not among them;
    ``tasks`` always includes that request's own handler task, before and after alike.
    """
    pid = server.proc.pid
    fds = len(fd_targets(pid))
    rss = rss_kib(pid)
    stats = await read_stats(server.port)
    return Snapshot(fds=fds, rss_kib=rss, sessions=stats["sessions"], tasks=stats["tasks"])


async def settle(
    server: ServerProcess, baseline: Snapshot, *, task_slack: int = 2, fd_slack: int = 2
) -> tuple[Snapshot, float]:
    """Poll (bounded) until no session is open and tasks and fds are back near ``baseline``.

    Returns the last snapshot (which the caller asserts on, settled or not, so a
    report can carry it) and how long it took.
    """
    started = time.monotonic()
    last = await snapshot(server)

    async def settled() -> bool:
        nonlocal last
        last = await snapshot(server)
        return (
            last.sessions == 0
            and last.tasks <= baseline.tasks + task_slack
            and last.fds <= baseline.fds + fd_slack
        )

    # Not settling is for the caller to judge, from the snapshot it gets back.
    with contextlib.suppress(AssertionError):
        await eventually(settled, SETTLE_TIMEOUT, 0.1, what="the server back at its baseline")
    return last, time.monotonic() - started


def log_figures(log: str) -> dict[str, int]:
    """Counts of the server log's WARNING and ERROR lines, by kind, and of tracebacks."""
    lines = log.splitlines()
    return {
        "WARNING": sum(" WARNING " in line for line in lines),
        "ERROR": sum(" ERROR " in line for line in lines),
        "ERROR_route_handler": sum(
            " ERROR aiohttp_spry: Unhandled exception in route handler" in line for line in lines
        ),
        "ERROR_session_1011": sum(
            " ERROR aiohttp_spry: Unhandled exception in WebSocket session" in line
            for line in lines
        ),
        "tracebacks": log.count("Traceback (most recent call last)"),
    }


# -- a raw client that can vanish at any point ---------------------------------------------


class RawClient:
    """One TCP connection to /chat: send the handshake, read the 101 and the welcome, abort."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.key = new_key()

    @classmethod
    async def connect(cls, port: int, *, rst: bool = False) -> RawClient:
        """Connect; with ``rst`` the abort sends a TCP RST (``SO_LINGER`` 0), not a FIN."""
        reader, writer = await asyncio.open_connection(HOST, port)
        if rst:
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return cls(reader, writer)

    async def send_handshake(self, port: int) -> None:
        await self.send(handshake_request(f"{HOST}:{port}", "/chat", key=self.key))

    async def read_101(self) -> None:
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        assert head.startswith("HTTP/1.1 101 "), head
        assert f"Sec-WebSocket-Accept: {accept_for(self.key)}" in head, head

    async def read_welcome(self) -> None:
        frame = await read_frame(self.reader)
        # A final text frame, uncompressed (no extension offered), unmasked, 7-bit length.
        assert (frame.fin, frame.opcode, frame.rsv, frame.masked) == (True, TEXT, 0, False), frame
        assert frame.length_bytes == 0, frame
        assert frame.payload.decode() == WELCOME

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def abort(self) -> None:
        self.writer.transport.abort()
