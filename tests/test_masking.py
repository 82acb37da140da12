"""RFC 6455 §5.1 masking, and the one aiohttp internal it depends on."""

from __future__ import annotations

import logging

import pytest
from aiohttp import web

from aiohttp_spry import Event, Spry, TextDataReceived, WebSocket
from aiohttp_spry.websocket.masking import _PARSER_ATTRIBUTE

from .conftest import ClientFactory, spry_records
from .support.rawws import RawWebSocket

seen_parsers: list[object] = []


async def echo(ws: WebSocket) -> None:
    seen_parsers.append(getattr(ws.event.request.protocol, _PARSER_ATTRIBUTE, None))
    async for message in ws.events:
        if isinstance(message, TextDataReceived):
            await ws.send_text(message.text)


async def echo_client(serve: ClientFactory) -> RawWebSocket:
    spry = Spry()

    @spry.route("/ws")
    def route(event: Event) -> web.StreamResponse:
        return event.ws.upgrade(echo)

    client = await serve(spry)
    conn = await RawWebSocket.connect("127.0.0.1", client.port)
    assert (await conn.request("/ws")).status == 101
    return conn


async def test_aiohttp_internal_parser_attribute_is_where_we_expect_it(
    serve: ClientFactory,
) -> None:
    # If this fails, aiohttp changed RequestHandler._payload_parser: masking.py
    # must be adapted before anything else.
    seen_parsers.clear()
    conn = await echo_client(serve)
    await conn.send_frame(0x1, b"hi")
    assert (await conn.read_frame()).payload == b"hi"
    [parser] = seen_parsers
    assert type(parser).__name__ == "_FirstFrameMaskCheck"
    await conn.aclose()


async def test_unmasked_first_frame_closes_with_1002_and_logs(
    serve: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    conn = await echo_client(serve)
    await conn.send_frame(0x1, b"hello", mask=False)
    frame = await conn.read_until_close()
    assert frame.close_code == 1002
    [warning] = spry_records(caplog, logging.WARNING)
    assert "unmasked frame" in warning.getMessage()
    assert "GET /ws peer=127.0.0.1" in warning.getMessage()
    await conn.aclose()


async def test_masked_frames_split_across_reads_pass_through(serve: ClientFactory) -> None:
    conn = await echo_client(serve)
    frame = b"".join([b"\x81", b"\x85", b"\x00\x00\x00\x00", b"hello"])
    for byte in frame[:3]:  # header arrives one byte at a time
        await conn.send(bytes([byte]))
    await conn.send(frame[3:])
    assert (await conn.read_frame()).payload == b"hello"
    await conn.aclose()
