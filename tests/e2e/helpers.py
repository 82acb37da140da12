"""Clients for the end-to-end suite: raw HTTP over asyncio streams, websockets, log polling."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect

HOST = "127.0.0.1"
IO_TIMEOUT = 10.0
WELCOME = "Connected to Spry WebSocket server! Send a message and I will echo it back."
PROTOCOL = "spry-chat-v1"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SAMPLE_KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def subprocess_env() -> dict[str, str]:
    """The environment for child Pythons: unbuffered UTF-8 output, no proxies."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    return env


@dataclass
class ServerProcess:
    """A running ``python -m example_app`` and where its output goes."""

    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"ws://{HOST}:{self.port}/chat"

    @property
    def http_url(self) -> str:
        return f"http://{HOST}:{self.port}/chat"

    def log(self) -> str:
        """Everything the server has written to stdout and stderr so far."""
        return self.log_path.read_bytes().decode("utf-8", errors="replace")


@dataclass
class RawResponse:
    """An HTTP response as it came over the wire."""

    status_line: str
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def status(self) -> int:
        return int(self.status_line.split(" ", 2)[1])

    def header(self, name: str, default: str | None = None) -> str | None:
        values = self.header_values(name)
        return values[0] if values else default

    def header_values(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def handshake_headers(port: int, **overrides: str | None) -> dict[str, str]:
    """A valid WebSocket handshake; ``overrides`` replace headers, ``None`` drops one.

    Keyword names use ``_`` for ``-``: ``Sec_WebSocket_Key=None``.
    """
    headers: dict[str, str | None] = {
        "Host": f"{HOST}:{port}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": SAMPLE_KEY,
        "Sec-WebSocket-Version": "13",
    }
    headers.update({name.replace("_", "-"): value for name, value in overrides.items()})
    return {name: value for name, value in headers.items() if value is not None}


def build_request(
    method: str,
    path: str,
    headers: Mapping[str, str] | Sequence[tuple[str, str]],
    *,
    version: str = "HTTP/1.1",
    body: bytes = b"",
) -> bytes:
    items = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    lines = [f"{method} {path} {version}", *(f"{name}: {value}" for name, value in items)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def raw_exchange(
    port: int, request: bytes, *, head: bool = False, timeout: float = IO_TIMEOUT
) -> RawResponse:
    """Send ``request`` bytes on a fresh connection and read one response.

    The body is read by ``Content-Length`` (none for 101/204/304 or ``head``),
    otherwise up to EOF. The connection is closed afterwards.
    """

    async def exchange() -> RawResponse:
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            writer.write(request)
            await writer.drain()
            raw_head = await reader.readuntil(b"\r\n\r\n")
            status_line, *header_lines = raw_head.decode("latin-1").split("\r\n")
            headers = []
            for line in header_lines:
                if line:
                    name, _, value = line.partition(":")
                    headers.append((name.strip(), value.strip()))
            response = RawResponse(status_line, headers, b"")
            if head or response.status in (101, 204, 304):
                return response
            length = response.header("Content-Length")
            if length is not None:
                response.body = await reader.readexactly(int(length))
            else:
                response.body = await reader.read()
            return response
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    return await asyncio.wait_for(exchange(), timeout)


def expected_accept(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` a server must answer ``key`` with (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


def ws_connect(server: ServerProcess, **kwargs: object) -> connect:
    """``websockets`` client for the server's /chat, every wait bounded, no proxy."""
    options: dict[str, object] = {
        "open_timeout": IO_TIMEOUT,
        "close_timeout": IO_TIMEOUT,
        "proxy": None,
        "ping_interval": None,
    }
    options.update(kwargs)
    return connect(server.url, **options)  # type: ignore[arg-type]


async def recv(ws: ClientConnection, timeout: float = IO_TIMEOUT) -> str | bytes:
    return await asyncio.wait_for(ws.recv(), timeout)


async def expect_welcome(ws: ClientConnection) -> None:
    assert await recv(ws) == WELCOME


async def assert_server_still_serves(server: ServerProcess) -> None:
    """A fresh websockets client still gets the welcome and an echo."""
    async with ws_connect(server) as ws:
        await expect_welcome(ws)
        await ws.send("still alive?")
        assert await recv(ws) == "Echo: still alive?"


async def wait_for_log(server: ServerProcess, *needles: str, timeout: float = IO_TIMEOUT) -> str:
    """Wait (bounded) until the server log contains every needle; return the log.

    The server logs asynchronously to the client's view of the session, so a line
    may land a moment after the frame the client waited for.
    """
    deadline = time.monotonic() + timeout
    while True:
        log = server.log()
        if all(needle in log for needle in needles):
            return log
        if time.monotonic() >= deadline:
            missing = [needle for needle in needles if needle not in log]
            raise AssertionError(f"server log lacks {missing!r} after {timeout}s:\n{log}")
        await asyncio.sleep(0.05)


def log_lines(log: str, level: str, logger: str) -> list[str]:
    """Lines of the server log at ``level`` from ``logger`` (the example's log format)."""
    marker = f" {level} {logger}: "
    return [line for line in log.splitlines() if marker in line]


def assert_in_order(text: str, needles: Sequence[str]) -> None:
    """Each needle occurs in ``text``, after the previous one."""
    position = 0
    for needle in needles:
        found = text.find(needle, position)
        assert found != -1, f"{needle!r} not found (in order) in:\n{text}"
        position = found + len(needle)
