"""Limits and security settings: origins, session cap, slow peers, heartbeat."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient

from aiohttp_spry import Event, PeerNotReadingError, Spry, WebSocket, WebSocketSettings

from .conftest import ClientFactory, RunAppFactory, spry_records
from .support.polling import eventually
from .support.rawws import RawWebSocket

Client = TestClient[web.Request, web.Application]


async def hello(ws: WebSocket) -> None:
    await ws.send_text("hello")
    async for _ in ws.events:
        pass


async def ws_client(
    serve: ClientFactory, spry: Spry, session: Any = hello, **upgrade: Any
) -> Client:
    @spry.route("/ws")
    def route(event: Event) -> web.StreamResponse:
        return event.ws.upgrade(session, **upgrade)

    return await serve(spry)


async def handshake_status(client: Client, headers: dict[str, str]) -> int:
    conn = await RawWebSocket.connect("127.0.0.1", client.port)
    try:
        return (await conn.request("/ws", headers=headers)).status
    finally:
        await conn.aclose()


async def test_same_origin_and_origin_less_clients_are_accepted(serve: ClientFactory) -> None:
    client = await ws_client(serve, Spry())
    own = f"127.0.0.1:{client.port}"
    assert await handshake_status(client, {"Host": own}) == 101
    assert await handshake_status(client, {"Host": own, "Origin": f"http://{own}"}) == 101
    # Behind a TLS-terminating proxy the page is https while the request is http.
    assert await handshake_status(client, {"Host": own, "Origin": f"https://{own}"}) == 101


async def test_foreign_origin_is_refused_with_403_and_logged(
    serve: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client = await ws_client(serve, Spry())
    own = f"127.0.0.1:{client.port}"
    for origin in ("https://evil.example", "null", f"http://localhost:{client.port}"):
        assert await handshake_status(client, {"Host": own, "Origin": origin}) == 403
    warnings = [r.getMessage() for r in spry_records(caplog, logging.WARNING)]
    assert len(warnings) == 3
    assert "'https://evil.example'" in warnings[0] and "GET /ws peer=127.0.0.1" in warnings[0]


async def test_allowed_origins_list_and_wildcard(serve: ClientFactory) -> None:
    listed = await ws_client(serve, Spry(allowed_origins=["https://App.example:443/"]))
    own = {"Host": f"127.0.0.1:{listed.port}"}
    assert await handshake_status(listed, {**own, "Origin": "https://app.example"}) == 101
    assert await handshake_status(listed, {**own, "Origin": "http://app.example"}) == 403
    anything = await ws_client(serve, Spry(), allowed_origins="*")
    own = {"Host": f"127.0.0.1:{anything.port}"}
    assert await handshake_status(anything, {**own, "Origin": "https://evil.example"}) == 101


def test_malformed_allowed_origin_is_refused_at_configuration() -> None:
    with pytest.raises(ValueError, match="scheme://host"):
        WebSocketSettings(allowed_origins=("example.com/path",))
    with pytest.raises(TypeError, match="unknown WebSocket setting"):
        Spry(hearbeat=3)  # type: ignore[call-arg]


async def test_origin_refusal_can_be_shaped_by_error_handlers(serve: ClientFactory) -> None:
    spry = Spry()
    spry.on_error(lambda error, event: {"refused": getattr(error, "status", None)})
    client = await ws_client(serve, spry)
    conn = await RawWebSocket.connect("127.0.0.1", client.port)
    reply = await conn.request("/ws", headers={"Origin": "https://evil.example"})
    assert (reply.status, reply.body) == (200, b'{"refused": 403}')
    await conn.aclose()


async def test_max_sessions_refuses_with_503_until_a_session_ends(
    serve: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client = await ws_client(serve, Spry(max_sessions=2))
    first = await client.ws_connect("/ws")
    second = await client.ws_connect("/ws")
    for ws in (first, second):
        assert await ws.receive_str() == "hello"
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/ws")
    assert refused.value.status == 503
    assert "max_sessions=2" in spry_records(caplog, logging.WARNING)[0].getMessage()
    await first.close()
    await eventually(lambda: len(Spry.sessions(client.app)) < 2, what="the first session ended")
    third = await client.ws_connect("/ws")
    assert await third.receive_str() == "hello"
    await second.close()
    await third.close()


def test_max_sessions_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_sessions"):
        Spry(max_sessions=0)


async def test_peer_that_never_reads_is_aborted_after_send_timeout(
    serve: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    sent = 0
    outcome: list[BaseException] = []
    ended = asyncio.Event()
    chunk = b"x" * 65536

    async def flood(ws: WebSocket) -> None:
        nonlocal sent
        try:
            for _ in range(100_000):  # bounded: 6.5 GB would never fit anyway
                await ws.send_bytes(chunk)
                sent += len(chunk)
        except BaseException as exc:
            outcome.append(exc)
            raise
        finally:
            ended.set()

    client = await ws_client(serve, Spry(send_timeout=0.3), flood)
    conn = await RawWebSocket.connect("127.0.0.1", client.port)
    assert (await conn.request("/ws")).status == 101
    # The raw client never reads: the server's buffers fill and sends stall.
    await asyncio.wait_for(ended.wait(), 30)
    assert isinstance(outcome[0], PeerNotReadingError)
    assert sent < 256 * 1024 * 1024  # bounded by kernel and transport buffers
    [warning] = spry_records(caplog, logging.WARNING)
    assert "not reading" in warning.getMessage() and "1008" in warning.getMessage()
    assert spry_records(caplog, logging.ERROR) == []
    await eventually(lambda: not Spry.sessions(client.app), what="the aborted session ended")
    assert Spry.sessions(client.app) == ()
    await conn.aclose()


async def test_reading_peer_receives_everything_despite_small_send_timeout(
    serve: ClientFactory,
) -> None:
    async def burst(ws: WebSocket) -> None:
        for index in range(200):
            await ws.send_bytes(bytes([index % 256]) * 65536)

    client = await ws_client(serve, Spry(send_timeout=5.0), burst)
    async with client.ws_connect("/ws") as ws:
        for index in range(200):
            message = await ws.receive()
            assert message.type is WSMsgType.BINARY
            assert message.data == bytes([index % 256]) * 65536


async def test_heartbeat_drops_a_peer_that_stops_answering_pings(
    serve_like_run_app: RunAppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    ended = asyncio.Event()

    async def wait(ws: WebSocket) -> None:
        async for _ in ws.events:
            pass
        ended.set()

    spry = Spry(heartbeat=0.2)
    spry.route("/ws")(lambda event: event.ws.upgrade(wait))
    running = await serve_like_run_app(spry)
    conn = await RawWebSocket.connect("127.0.0.1", running.port)
    assert (await conn.request("/ws")).status == 101
    # The raw client reads the ping but never answers it.
    ping = await conn.read_frame()
    assert ping.opcode == 0x9
    await asyncio.wait_for(ended.wait(), 5)
    [warning] = spry_records(caplog, logging.WARNING)
    assert "1006" in warning.getMessage()
    assert "No PONG" in warning.getMessage()
    assert Spry.sessions(running.app) == ()
    await conn.aclose()
