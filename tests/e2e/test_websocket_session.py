"""The echo chat over a real WebSocket: welcome, echoes, subprotocols, closing, logging."""

from __future__ import annotations

import asyncio
import os
import struct

import pytest

from tests.support.rawws import raw_exchange
from tests.support.wire import SAMPLE_KEY, accept_for, build_request

from .helpers import (
    PROTOCOL,
    WELCOME,
    ServerProcess,
    assert_in_order,
    expect_welcome,
    handshake_headers,
    log_lines,
    recv,
    wait_for_log,
    ws_connect,
)

pytestmark = pytest.mark.e2e

BINARY_ACK = "[Binary data received, not echoed]"


async def test_welcome_then_each_text_message_is_echoed(server: ServerProcess) -> None:
    async with ws_connect(server) as ws:
        assert await recv(ws) == WELCOME
        for text in ["Hello Spry!", "", "  spaces  ", "héllo wörld ✓ 🚀"]:
            await ws.send(text)
            assert await recv(ws) == f"Echo: {text}"


async def test_binary_message_is_acknowledged_not_echoed(server: ServerProcess) -> None:
    async with ws_connect(server) as ws:
        await expect_welcome(ws)
        await ws.send(b"\x00\x01\xffbinary")
        reply = await recv(ws)
        assert reply == BINARY_ACK
        assert isinstance(reply, str)
        # The session goes on after a binary message.
        await ws.send("after binary")
        assert await recv(ws) == "Echo: after binary"


async def test_fragmented_text_message_is_echoed_whole(server: ServerProcess) -> None:
    async with ws_connect(server) as ws:
        await expect_welcome(ws)
        await ws.send(["frag", "men", "ted"])
        assert await recv(ws) == "Echo: fragmented"


async def test_large_text_message_is_echoed_intact(server: ServerProcess) -> None:
    text = os.urandom(384 * 1024).hex()  # 768 KiB, under the 4 MiB default limit
    async with ws_connect(server, max_size=None) as ws:
        await expect_welcome(ws)
        await ws.send(text)
        assert await recv(ws) == f"Echo: {text}"


async def test_upgrade_offering_spry_protocol_selects_it(server: ServerProcess) -> None:
    async with ws_connect(server, subprotocols=[PROTOCOL]) as ws:
        assert ws.subprotocol == PROTOCOL
        assert ws.response is not None
        assert ws.response.headers.get_all("Sec-WebSocket-Protocol") == [PROTOCOL]
        await expect_welcome(ws)
    await wait_for_log(server, f"WebSocket connection established (protocol={PROTOCOL})")


async def test_upgrade_offering_several_protocols_selects_the_one_spoken(
    server: ServerProcess,
) -> None:
    async with ws_connect(server, subprotocols=["other", PROTOCOL, "third"]) as ws:
        assert ws.subprotocol == PROTOCOL
        await expect_welcome(ws)
    log = await wait_for_log(server, "Connection closed")
    assert not log_lines(log, "WARNING", "aiohttp_spry"), log


async def test_upgrade_without_offered_protocol_accepts_without_header(
    server: ServerProcess,
) -> None:
    async with ws_connect(server) as ws:
        assert ws.subprotocol is None
        assert ws.response is not None
        assert "Sec-WebSocket-Protocol" not in ws.response.headers
        await expect_welcome(ws)
        await ws.send("no protocol")
        assert await recv(ws) == "Echo: no protocol"
    log = await wait_for_log(server, "WebSocket connection established (protocol=None)")
    # Offering nothing is the tutorial client's normal case: no warning for it.
    assert not log_lines(log, "WARNING", "aiohttp_spry"), log


async def test_raw_upgrade_without_protocol_gets_101_without_protocol_header(
    server: ServerProcess,
) -> None:
    request = build_request("GET", "/chat", handshake_headers(server.port))
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", server.port), 10)
    try:
        writer.write(request)
        head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).decode("latin-1")
        lines = head.split("\r\n")
        assert lines[0].startswith("HTTP/1.1 101 ")
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines[1:] if line)
        }
        assert "sec-websocket-protocol" not in headers, head
        assert "sec-websocket-extensions" not in headers, head
        assert headers["upgrade"].lower() == "websocket"
        assert headers["sec-websocket-accept"] == accept_for(SAMPLE_KEY)

        # The welcome arrives as one unmasked, uncompressed text frame.
        first, length = await asyncio.wait_for(reader.readexactly(2), 10)
        assert first == 0x81  # FIN + text
        assert length == len(WELCOME.encode())  # < 126, unmasked
        payload = await asyncio.wait_for(reader.readexactly(length), 10)
        assert payload.decode() == WELCOME

        # A masked close frame with 1000 is answered with a close frame with 1000.
        body = struct.pack("!H", 1000)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(body))
        writer.write(bytes([0x88, 0x80 | len(body)]) + mask + masked)
        first, length = await asyncio.wait_for(reader.readexactly(2), 10)
        assert first == 0x88
        assert length >= 2
        code = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(length), 10))[0]
        assert code == 1000
    finally:
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), 10)


async def test_upgrade_with_unknown_protocol_accepts_without_header_and_warns(
    server: ServerProcess,
) -> None:
    async with ws_connect(server, subprotocols=["other"]) as ws:
        assert ws.subprotocol is None
        assert ws.response is not None
        assert "Sec-WebSocket-Protocol" not in ws.response.headers
        await expect_welcome(ws)
        await ws.send("still talking")
        assert await recv(ws) == "Echo: still talking"

    log = await wait_for_log(server, "subprotocol mismatch")
    warnings = [
        line for line in log_lines(log, "WARNING", "aiohttp_spry") if "subprotocol mismatch" in line
    ]
    assert len(warnings) == 1, log
    assert "['other']" in warnings[0]
    assert f"['{PROTOCOL}']" in warnings[0]


async def test_raw_upgrade_with_unknown_protocol_gets_101_without_protocol_header(
    server: ServerProcess,
) -> None:
    headers = handshake_headers(server.port, Sec_WebSocket_Protocol="other, another")
    response = await raw_exchange(server.port, build_request("GET", "/chat", headers))

    assert response.status_line.startswith("HTTP/1.1 101 ")
    assert response.header_values("Sec-WebSocket-Protocol") == []
    log = await wait_for_log(server, "subprotocol mismatch")
    assert "['other', 'another']" in log


@pytest.mark.parametrize("code", [1000, 1001, 4000])
async def test_client_close_is_answered_with_the_same_code(
    server: ServerProcess, code: int
) -> None:
    async with ws_connect(server) as ws:
        await expect_welcome(ws)
        await asyncio.wait_for(ws.close(code, "bye"), 10)
        # websockets' close_code is the code the *server* sent back.
        assert ws.close_code == code
    await wait_for_log(server, f"Connection closed (code={code})")


async def test_session_logs_its_lifecycle_at_info(server: ServerProcess) -> None:
    async with ws_connect(server) as ws:
        await expect_welcome(ws)
        await ws.send("log me")
        assert await recv(ws) == "Echo: log me"
        await ws.send(b"\x01")
        assert await recv(ws) == BINARY_ACK

    log = await wait_for_log(server, "Connection closed")
    info = "\n".join(log_lines(log, "INFO", "example_app"))
    assert_in_order(
        info,
        [
            "WebSocket route called: GET /chat peer=127.0.0.1",
            "WebSocket supported: True",
            "WebSocket upgrade request: True",
            "Attempting WebSocket upgrade",
            "WebSocket connection established (protocol=None)",
            "Received text: log me",
            "Received binary data",
            "Connection closed (code=1000)",
        ],
    )
    assert "Traceback" not in log
    assert not log_lines(log, "ERROR", "aiohttp_spry")
