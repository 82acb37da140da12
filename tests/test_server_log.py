"""aiohttp's parser refusals: 400, never 5xx, and one rate-limited WARNING line, no traceback."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from aiohttp_spry import Event, Spry, WebSocket
from aiohttp_spry.server_log import SERVER_LOGGER, BadRequestLogFilter, quiet_bad_requests

Client = TestClient[web.Request, web.Application]
AiohttpClient = Callable[[web.Application], Awaitable[Client]]
TIMEOUT = 10.0
HANDSHAKE = (
    "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    """Replace the process's filter with one on a fake clock (3 lines per 60 s)."""
    server_logger = logging.getLogger(SERVER_LOGGER)
    saved = list(server_logger.filters)
    for existing in saved:
        server_logger.removeFilter(existing)
    fake = FakeClock()
    server_logger.addFilter(BadRequestLogFilter(burst=3, window=60.0, clock=fake))
    try:
        yield fake
    finally:
        for installed in list(server_logger.filters):
            server_logger.removeFilter(installed)
        for existing in saved:
            server_logger.addFilter(existing)


async def app_client(aiohttp_client: AiohttpClient) -> Client:
    app = web.Application()
    spry = Spry(app)

    @spry.route("/ws")
    async def ws(event: Event) -> web.StreamResponse:
        async def session(ws: WebSocket) -> None:
            async for _ in ws.events:
                pass

        return event.ws.upgrade(session, protocol="chat")

    @spry.route("/boom")
    def boom(event: Event) -> str:
        raise RuntimeError("a handler bug")

    async def raw_boom(request: web.Request) -> web.Response:
        raise RuntimeError("a bug in a plain aiohttp handler")

    app.router.add_get("/raw-boom", raw_boom)
    return await aiohttp_client(app)


def port(client: Client) -> int:
    assert client.port is not None
    return client.port


async def send_raw(port: int, data: bytes) -> bytes:
    """Send ``data``, return the status line the server answered with."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.readline(), TIMEOUT)
    finally:
        writer.close()


def server_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == SERVER_LOGGER]


HOSTILE = {
    "a 64 KiB header": (HANDSHAKE + "X-Big: " + "a" * 65536 + "\r\n\r\n").encode(),
    "500 headers": (HANDSHAKE + "".join(f"X-{i}: v\r\n" for i in range(500)) + "\r\n").encode(),
    "10,000 subprotocols": (
        HANDSHAKE + "Sec-WebSocket-Protocol: " + ", ".join(f"p{i}" for i in range(10_000))
    ).encode()
    + b"\r\n\r\n",
}


@pytest.mark.parametrize("request_bytes", HOSTILE.values(), ids=HOSTILE.keys())
async def test_a_request_the_parser_refuses_gets_400_and_one_warning_line(
    aiohttp_client: AiohttpClient,
    caplog: pytest.LogCaptureFixture,
    clock: FakeClock,
    request_bytes: bytes,
) -> None:
    client = await app_client(aiohttp_client)
    status_line = await send_raw(port(client), request_bytes)
    assert status_line.startswith(b"HTTP/1.") and b" 400 " in status_line, status_line
    [record] = server_records(caplog)
    assert record.levelno == logging.WARNING
    assert record.exc_info is None and record.exc_text is None
    text = record.getMessage()
    assert text.startswith("Bad request from 127.0.0.1 refused with 400 ("), text
    assert "\n" not in text and len(text) < 400, text
    # The server keeps serving.
    ws = await client.ws_connect("/ws", protocols=["chat"])
    assert ws.protocol == "chat"
    await ws.close()


async def test_past_the_burst_lines_are_suppressed_then_counted(
    aiohttp_client: AiohttpClient, caplog: pytest.LogCaptureFixture, clock: FakeClock
) -> None:
    client = await app_client(aiohttp_client)
    for _ in range(7):
        assert b" 400 " in await send_raw(port(client), HOSTILE["a 64 KiB header"])
    assert len(server_records(caplog)) == 3  # the burst; 4 more were counted, not logged
    clock.now += 61  # a new window
    assert b" 400 " in await send_raw(port(client), HOSTILE["500 headers"])
    records = server_records(caplog)
    assert len(records) == 4
    assert records[-1].getMessage().endswith("; 4 more suppressed (at most 3 per 60s)")


async def test_a_handler_error_keeps_its_error_and_traceback(
    aiohttp_client: AiohttpClient, caplog: pytest.LogCaptureFixture, clock: FakeClock
) -> None:
    client = await app_client(aiohttp_client)
    response = await client.get("/boom")
    assert response.status == 500
    [record] = [r for r in caplog.records if r.name == "aiohttp_spry" and r.exc_info]
    assert record.levelno == logging.ERROR
    assert not server_records(caplog)
    # aiohttp's own "Error handling request" for a server bug passes unchanged.
    response = await client.get("/raw-boom")
    assert response.status == 500
    [record] = server_records(caplog)
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert record.getMessage().startswith("Error handling request")


def test_quiet_bad_requests_installs_one_filter_per_process() -> None:
    server_logger = logging.getLogger(SERVER_LOGGER)
    first = quiet_bad_requests()
    assert quiet_bad_requests() is first
    assert sum(isinstance(f, BadRequestLogFilter) for f in server_logger.filters) == 1


@pytest.mark.parametrize(
    ("burst", "window", "match"),
    [(0, 60.0, "burst must be an int >= 1"), (5, 0, "window must be a positive number")],
)
def test_filter_settings_are_checked(burst: int, window: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        BadRequestLogFilter(burst, window)
