"""Measuring a running ``example_app`` from outside and inside, and a raw aborting client."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import time
from dataclasses import dataclass

from tests.e2e.helpers import (
    HOST,
    WELCOME,
    ServerProcess,
    build_request,
    expected_accept,
    raw_exchange,
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

    Returns the last snapshot (which the caller asserts on) and how long it took.
    """
    started = time.monotonic()
    while True:
        now = await snapshot(server)
        if (
            now.sessions == 0
            and now.tasks <= baseline.tasks + task_slack
            and now.fds <= baseline.fds + fd_slack
        ) or time.monotonic() - started > SETTLE_TIMEOUT:
            return now, time.monotonic() - started
        await asyncio.sleep(0.1)


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


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """A final client frame (masked, RFC 6455 §5.3), payload < 126 bytes."""
    assert len(payload) < 126
    key = os.urandom(4)
    masked = bytes(b ^ key[n % 4] for n, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + key + masked


class RawClient:
    """One TCP connection to /chat: send the handshake, read the 101 and the welcome, abort."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.key = base64.b64encode(os.urandom(16)).decode()

    @classmethod
    async def connect(cls, port: int, *, rst: bool = False) -> RawClient:
        """Connect; with ``rst`` the abort sends a TCP RST (``SO_LINGER`` 0), not a FIN."""
        reader, writer = await asyncio.open_connection(HOST, port)
        if rst:
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return cls(reader, writer)

    async def send_handshake(self, port: int) -> None:
        headers = {
            "Host": f"{HOST}:{port}",
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": self.key,
            "Sec-WebSocket-Version": "13",
        }
        await self.send(build_request("GET", "/chat", headers))

    async def read_101(self) -> None:
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        assert head.startswith("HTTP/1.1 101 "), head
        assert f"Sec-WebSocket-Accept: {expected_accept(self.key)}" in head, head

    async def read_welcome(self) -> None:
        first, second = await self.reader.readexactly(2)
        assert first == 0x81, first  # final text frame, uncompressed (no extension offered)
        assert second < 126, second
        assert (await self.reader.readexactly(second)).decode() == WELCOME

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def abort(self) -> None:
        self.writer.transport.abort()
