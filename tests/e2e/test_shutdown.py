"""Stopping the server with a signal closes every open session with 1001, then exits 0."""

from __future__ import annotations

import asyncio
import signal

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK

from .helpers import ServerProcess, expect_welcome, log_lines, wait_for_log, ws_connect

pytestmark = pytest.mark.e2e

CLIENTS = 20
CLOSE_WAIT = 5.0
EXIT_WAIT = 10.0


async def _closed_by_server(ws: ClientConnection) -> ConnectionClosed:
    """Wait (bounded) until the connection ends; return how it ended."""
    try:
        message = await asyncio.wait_for(ws.recv(), CLOSE_WAIT)
    except ConnectionClosed as closed:
        return closed
    except asyncio.TimeoutError:
        raise AssertionError(f"the server did not close the session within {CLOSE_WAIT}s") from None
    raise AssertionError(f"expected the server to close, got a message: {message!r}")


async def _connect_all(server: ServerProcess) -> list[ClientConnection]:
    """Open CLIENTS connections at once; on any failure close the ones that opened."""
    opened = await asyncio.gather(
        *(ws_connect(server, close_timeout=2) for _ in range(CLIENTS)), return_exceptions=True
    )
    clients = [ws for ws in opened if isinstance(ws, ClientConnection)]
    errors = [error for error in opened if isinstance(error, BaseException)]
    if errors:
        await _close_all(clients)
        raise errors[0]
    return clients


async def _close_all(clients: list[ClientConnection]) -> None:
    """Close every client concurrently (a no-op for those already closed), bounded."""
    await asyncio.wait_for(
        asyncio.gather(*(ws.close() for ws in clients), return_exceptions=True), 10
    )


@pytest.mark.timeout(60)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_signal_closes_every_open_session_with_1001_and_exits_0(
    server: ServerProcess, signum: signal.Signals
) -> None:
    clients = await _connect_all(server)
    try:
        await asyncio.gather(*(expect_welcome(ws) for ws in clients))

        server.proc.send_signal(signum)
        endings = await asyncio.gather(*(_closed_by_server(ws) for ws in clients))

        for ws, ending in zip(clients, endings, strict=True):
            assert isinstance(ending, ConnectionClosedOK), ending
            assert ending.rcvd is not None, ending
            assert ending.rcvd.code == 1001, ending
            # The server started the closing handshake, the client answered.
            assert ending.rcvd_then_sent is True, ending
            assert ws.close_code == 1001
    finally:
        await _close_all(clients)

    returncode = await asyncio.to_thread(server.proc.wait, EXIT_WAIT)
    assert returncode == 0, server.log()
    log = await wait_for_log(server, f"Closing {CLIENTS} WebSocket session(s) with 1001")
    assert "Traceback" not in log, log
    assert not log_lines(log, "ERROR", "aiohttp_spry"), log
    assert "did not finish closing" not in log, log
