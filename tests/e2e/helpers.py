"""The end-to-end suite's server and clients: ``python -m example_app``, websockets, log polling."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect

from tests.support.polling import eventually
from tests.support.procs import HOST, free_port, spawn_listening, stop_process
from tests.support.wire import SAMPLE_KEY

IO_TIMEOUT = 10.0
STARTUP_TIMEOUT = 15.0
SHUTDOWN_TIMEOUT = 10.0
WELCOME = "Connected to Spry WebSocket server! Send a message and I will echo it back."
PROTOCOL = "spry-chat-v1"


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


def start_example(
    log_path: Path,
    args: Sequence[str] = (),
    *,
    env: Mapping[str, str] | None = None,
    command: Sequence[str] | None = None,
    port: int | None = None,
) -> ServerProcess:
    """Start ``python -m example_app ARGS`` (or ``command``, which must listen on the port)
    on a free loopback port and wait until it listens.

    Raises:
        RuntimeError: it exited or did not listen within ``STARTUP_TIMEOUT``.
    """
    port = port or free_port()
    if command is None:
        command = [sys.executable, "-m", "example_app", "--host", HOST, "--port", str(port)]
    proc = spawn_listening(
        [*command, *args], port, log_path, env=env, timeout=STARTUP_TIMEOUT, label="example_app"
    )
    return ServerProcess(port=port, proc=proc, log_path=log_path)


def stop_example(server: ServerProcess, sig: signal.Signals = signal.SIGINT) -> None:
    """``sig`` (SIGINT: a Ctrl-C), then SIGKILL after ``SHUTDOWN_TIMEOUT``; by PID only."""
    stop_process(server.proc, sig, timeout=SHUTDOWN_TIMEOUT)


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

    def complete() -> str | None:
        log = server.log()
        return log if all(needle in log for needle in needles) else None

    def missing() -> str:
        log = server.log()
        lacking = [needle for needle in needles if needle not in log]
        return f"server log lacks {lacking!r}:\n{log}"

    return await eventually(complete, timeout, 0.05, what=missing)


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
