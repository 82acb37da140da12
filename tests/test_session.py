"""The session side: messages, sending, closing, failures, limits and shutdown."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient

from aiohttp_spry import (
    BinaryDataReceived,
    CloseCode,
    CloseReceived,
    Event,
    Spry,
    TextDataReceived,
    WebSocket,
)

from .conftest import ClientFactory, RunAppFactory, spry_records
from .support.polling import eventually
from .support.rawws import RawWebSocket
from .support.wire import TEXT, close_payload

Client = TestClient[web.Request, web.Application]
Session = Callable[[WebSocket], Awaitable[None]]


async def session_client(
    serve: ClientFactory, session: Session, spry: Spry | None = None, **upgrade: Any
) -> Client:
    spry = spry or Spry()

    @spry.route("/ws")
    def route(event: Event) -> web.StreamResponse:
        return event.ws.upgrade(session, **upgrade)

    return await serve(spry)


async def echo(ws: WebSocket) -> None:
    async for message in ws.events:
        match message:
            case TextDataReceived(text=text):
                await ws.send_text(f"Echo: {text}")
            case BinaryDataReceived(data=data):
                await ws.send_bytes(data)
            case CloseReceived():
                pass


async def test_messages_arrive_as_matchable_frozen_classes(serve: ClientFactory) -> None:
    client = await session_client(serve, echo)
    async with client.ws_connect("/ws") as ws:
        await ws.send_str("hi")
        assert await ws.receive_str() == "Echo: hi"
        await ws.send_bytes(b"\x00\xff")
        assert await ws.receive_bytes() == b"\x00\xff"
    message = TextDataReceived("x")
    with pytest.raises(AttributeError):
        message.text = "y"  # type: ignore[misc]


async def test_send_json_sends_a_text_frame(serve: ClientFactory) -> None:
    async def session(ws: WebSocket) -> None:
        await ws.send_json({"n": 1, "event": str(ws.event.pathname)})

    client = await session_client(serve, session)
    async with client.ws_connect("/ws") as ws:
        message = await ws.receive()
        assert message.type is WSMsgType.TEXT
        assert message.json() == {"n": 1, "event": "/ws"}


async def test_session_return_closes_with_1000(serve: ClientFactory) -> None:
    async def session(ws: WebSocket) -> None:
        await ws.send_text("bye")

    client = await session_client(serve, session)
    async with client.ws_connect("/ws") as ws:
        assert await ws.receive_str() == "bye"
        assert (await ws.receive()).type is WSMsgType.CLOSE
        assert ws.close_code == CloseCode.OK


async def test_session_close_with_code_and_reason(serve: ClientFactory) -> None:
    async def session(ws: WebSocket) -> None:
        await ws.close(4001, "go away")
        assert ws.closed
        assert ws.close_code == 4001

    client = await session_client(serve, session)
    conn = await RawWebSocket.connect("127.0.0.1", client.port)
    assert (await conn.request("/ws")).status == 101
    frame = await conn.read_until_close()
    assert (frame.close_code, frame.payload[2:]) == (4001, b"go away")
    await conn.aclose()


@pytest.mark.parametrize(("code", "reason"), [(999, ""), (1005, ""), (1000, "x" * 124)])
async def test_close_refuses_unsendable_code_or_long_reason(
    serve: ClientFactory, code: int, reason: str
) -> None:
    outcome: list[str] = []

    async def session(ws: WebSocket) -> None:
        try:
            await ws.close(code, reason)
        except ValueError as exc:
            outcome.append(str(exc))

    client = await session_client(serve, session)
    async with client.ws_connect("/ws") as ws:
        await ws.receive()
    assert len(outcome) == 1


async def test_peer_close_yields_close_received_and_is_echoed(serve: ClientFactory) -> None:
    received: list[Any] = []

    async def session(ws: WebSocket) -> None:
        received.extend([message async for message in ws.events])

    client = await session_client(serve, session)
    async with client.ws_connect("/ws") as ws:
        await ws.close(code=4000, message=b"done")
        assert ws.close_code == 4000
    assert received == [CloseReceived(4000, "done")]


async def test_peer_close_without_status_is_1005(serve: ClientFactory) -> None:
    received: list[Any] = []
    finished = asyncio.Event()

    async def session(ws: WebSocket) -> None:
        received.extend([message async for message in ws.events])
        finished.set()

    client = await session_client(serve, session)
    conn = await RawWebSocket.connect("127.0.0.1", client.port)
    assert (await conn.request("/ws")).status == 101
    await conn.send_frame(0x8, close_payload(None))
    frame = await conn.read_until_close()
    assert frame.close_code == 1000
    await asyncio.wait_for(finished.wait(), 5)
    assert received == [CloseReceived(1005, "")]
    await conn.aclose()


async def test_session_exception_closes_1011_logs_and_spares_others(
    serve: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    async def session(ws: WebSocket) -> None:
        async for message in ws.events:
            if isinstance(message, TextDataReceived):
                if message.text == "crash":
                    raise RuntimeError("session bug")
                await ws.send_text(f"Echo: {message.text}")

    client = await session_client(serve, session)
    async with client.ws_connect("/ws") as bystander, client.ws_connect("/ws") as victim:
        await victim.send_str("crash")
        closing = await victim.receive()
        assert closing.type is WSMsgType.CLOSE
        assert victim.close_code == CloseCode.INTERNAL_ERROR
        await bystander.send_str("still here")
        assert await bystander.receive_str() == "Echo: still here"
    [error] = spry_records(caplog, logging.ERROR)
    assert "1011" in error.getMessage()
    assert "GET /ws peer=127.0.0.1" in error.getMessage()
    assert error.exc_info is not None
    assert error.exc_info[0] is RuntimeError


async def test_message_over_max_msg_size_closes_1009_and_logs(
    serve: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client = await session_client(serve, echo, max_msg_size=1024)
    async with client.ws_connect("/ws") as ws:
        await ws.send_str("x" * 2048)
        assert (await ws.receive()).type is WSMsgType.CLOSE
        assert ws.close_code == CloseCode.MESSAGE_TOO_BIG
    [warning] = spry_records(caplog, logging.WARNING)
    assert "1009" in warning.getMessage()
    assert "MESSAGE_TOO_BIG" in warning.getMessage()


async def test_route_setting_applies_and_upgrade_overrides_it(serve: ClientFactory) -> None:
    spry = Spry(max_msg_size=10)

    @spry.route("/route", max_msg_size=100)
    def route(event: Event) -> web.StreamResponse:
        return event.ws.upgrade(echo)

    @spry.route("/upgrade", max_msg_size=100)
    def upgrade(event: Event) -> web.StreamResponse:
        return event.ws.upgrade(echo, max_msg_size=1000)

    client = await serve(spry)
    for path, fits, too_big in (("/route", 50, 150), ("/upgrade", 500, 1500)):
        async with client.ws_connect(path) as ws:
            await ws.send_str("x" * fits)
            assert await ws.receive_str() == "Echo: " + "x" * fits
            await ws.send_str("x" * too_big)
            assert (await ws.receive()).type is WSMsgType.CLOSE
            assert ws.close_code == CloseCode.MESSAGE_TOO_BIG


async def test_invalid_utf8_closes_1007(serve: ClientFactory) -> None:
    client = await session_client(serve, echo)
    conn = await RawWebSocket.connect("127.0.0.1", client.port)
    assert (await conn.request("/ws")).status == 101
    await conn.send_frame(0x1, b"\xff\xfe")
    assert (await conn.read_until_close()).close_code == CloseCode.INVALID_TEXT
    await conn.aclose()


async def test_receive_timeout_closes_1008(serve: ClientFactory) -> None:
    client = await session_client(serve, echo, receive_timeout=0.2)
    async with client.ws_connect("/ws") as ws:
        assert (await asyncio.wait_for(ws.receive(), 5)).type is WSMsgType.CLOSE
        assert ws.close_code == CloseCode.POLICY_VIOLATION


@pytest.mark.parametrize("handler_cancellation", [False, True])
async def test_peer_that_vanishes_ends_the_session_and_frees_it(
    serve_like_run_app: RunAppFactory, handler_cancellation: bool
) -> None:
    # aiohttp's default (run_app) lets the handler run on: iteration ends. With
    # handler_cancellation=True (aiohttp's test server) the session is cancelled.
    outcome: list[str] = []
    ended = asyncio.Event()

    async def session(ws: WebSocket) -> None:
        await ws.send_text("hello")
        try:
            async for _ in ws.events:
                pass
            outcome.append("iteration ended")
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise
        finally:
            ended.set()

    spry = Spry()
    spry.route("/ws")(lambda event: event.ws.upgrade(session))
    running = await serve_like_run_app(spry, handler_cancellation=handler_cancellation)
    conn = await RawWebSocket.connect("127.0.0.1", running.port)
    assert (await conn.request("/ws")).status == 101
    assert (await conn.read_frame()).payload == b"hello"
    assert len(Spry.sessions(running.app)) == 1
    conn.writer.transport.abort()
    await asyncio.wait_for(ended.wait(), 5)
    await eventually(lambda: not Spry.sessions(running.app), what="the session ended")
    assert Spry.sessions(running.app) == ()
    assert outcome == ["cancelled" if handler_cancellation else "iteration ended"]


async def test_send_after_peer_left_is_not_a_server_error(
    serve: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    done = asyncio.Event()

    async def session(ws: WebSocket) -> None:
        try:
            async for _ in ws.events:
                pass
            await ws.send_text("too late")
        finally:
            done.set()

    client = await session_client(serve, session)
    async with client.ws_connect("/ws") as ws:
        await ws.close()
    await asyncio.wait_for(done.wait(), 5)
    assert spry_records(caplog, logging.ERROR) == []


async def test_shutdown_closes_every_session_with_1001(serve: ClientFactory) -> None:
    client = await session_client(serve, echo)
    app = client.app
    sockets = [await client.ws_connect("/ws") for _ in range(5)]
    for ws in sockets:
        await ws.send_str("ready")
        assert await ws.receive_str() == "Echo: ready"
    assert len(Spry.sessions(app)) == 5
    closing = asyncio.ensure_future(app.shutdown())
    for ws in sockets:
        message = await asyncio.wait_for(ws.receive(), 5)
        assert message.type is WSMsgType.CLOSE
        assert message.data == CloseCode.GOING_AWAY
    await asyncio.wait_for(closing, 5)
    for ws in sockets:
        await ws.close()


async def test_shutdown_drops_a_peer_that_never_answers_after_the_timeout(
    serve: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    async def busy(ws: WebSocket) -> None:
        # Not reading: aiohttp then waits for the peer's close reply.
        await asyncio.sleep(60)

    client = await session_client(serve, busy, Spry(shutdown_timeout=0.3))
    app = client.app
    conn = await RawWebSocket.connect("127.0.0.1", client.port)
    assert (await conn.request("/ws")).status == 101
    await eventually(lambda: Spry.sessions(app), what="the session started")
    # The raw peer reads the 1001 close frame but never answers it.
    await asyncio.wait_for(app.shutdown(), 5)
    assert (await conn.read_frame()).close_code == CloseCode.GOING_AWAY
    assert await conn.read_to_eof() == b""
    assert any(
        "did not finish closing" in r.getMessage() for r in spry_records(caplog, logging.WARNING)
    )
    await conn.aclose()


async def test_handshake_during_shutdown_is_refused_with_503(serve: ClientFactory) -> None:
    client = await session_client(serve, echo)
    await client.app.shutdown()
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/ws")
    assert refused.value.status == 503


async def test_finished_sessions_are_freed_without_the_cyclic_gc(serve: ClientFactory) -> None:
    # Reference cycles would keep every handshake's objects (and aiohttp's
    # request and protocol behind them) alive until a GC run, costing memory
    # and CPU per connection.
    from aiohttp_spry.websocket import EventWebSocket, UpgradeResponse

    spry = Spry()

    @spry.route("/ws")
    def route(event: Event) -> web.StreamResponse:
        if not event.ws.is_upgrade_request:
            return web.Response(text="fallback")
        return event.ws.upgrade(echo)

    client = await serve(spry)
    ours = (Event, EventWebSocket, UpgradeResponse, WebSocket)
    gc.collect()
    # Objects of earlier tests may still be alive: only new ones count.
    earlier = [o for o in gc.get_objects() if type(o) in ours]
    gc.disable()
    try:
        for _ in range(3):
            assert await (await client.get("/ws")).text() == "fallback"
            conn = await RawWebSocket.connect("127.0.0.1", client.port)
            assert (await conn.request("/ws")).status == 101
            await conn.send_frame(0x8, close_payload(1000))
            assert (await conn.read_until_close()).close_code == 1000
            assert await conn.read_to_eof() == b""
            await conn.aclose()
        await eventually(lambda: not Spry.sessions(client.app), what="every session ended")
        await asyncio.sleep(0.05)
        known = {id(o) for o in earlier}
        alive = [
            type(o).__name__ for o in gc.get_objects() if type(o) in ours and id(o) not in known
        ]
        assert alive == []
    finally:
        gc.enable()


async def test_a_client_that_leaves_before_the_101_gets_no_session_and_no_error(
    serve_like_run_app: RunAppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # The route has returned its upgrade; a middleware still works on it (say, an
    # auth lookup) while the client gives up. The session must never run, nothing is
    # logged above DEBUG, and the next client is served as usual.
    arrived, left = asyncio.Event(), asyncio.Event()
    ran: list[str] = []

    async def session(ws: WebSocket) -> None:
        ran.append("session")
        await echo(ws)

    async def slow_after_the_route(event: Event, next: Callable[[], Any]) -> Any:
        result = await next()
        if event.request.headers.get("X-Leave") == "1":
            arrived.set()
            await left.wait()
            await eventually(lambda: event.request.transport is None, what="the connection gone")
        return result

    spry = Spry()
    spry.use(slow_after_the_route)
    spry.route("/ws")(lambda event: event.ws.upgrade(session))
    running = await serve_like_run_app(spry)
    caplog.set_level(logging.DEBUG, logger="aiohttp_spry")

    leaving = await RawWebSocket.connect("127.0.0.1", running.port)
    await leaving.send(
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        b"X-Leave: 1\r\n\r\n"
    )
    await asyncio.wait_for(arrived.wait(), 5)
    leaving.writer.transport.abort()
    left.set()
    await eventually(
        lambda: any("peer left during the handshake" in r.getMessage() for r in caplog.records),
        what="the DEBUG line for the client that left",
    )
    assert ran == []
    assert Spry.sessions(running.app) == ()
    spry_lines = [r for r in caplog.records if r.name.startswith("aiohttp_spry")]
    assert [r.getMessage() for r in spry_lines if r.levelno > logging.DEBUG] == []

    staying = await RawWebSocket.connect("127.0.0.1", running.port)
    assert (await staying.request("/ws")).status == 101
    await staying.send_frame(TEXT, b"still serving")
    assert (await staying.read_frame()).payload == b"Echo: still serving"
    assert ran == ["session"]
