"""RFC 6455 §5.5 and §7: ping, pong and the closing handshake."""

from __future__ import annotations

import asyncio

import pytest

from ..support.wire import close_payload
from .checks import (
    CLOSE,
    PING,
    PONG,
    TEXT,
    ConformanceSocket,
    assert_connection_failed,
    assert_still_serves,
    client_frame,
)
from .conftest import EchoServer


@pytest.mark.parametrize(
    "payload",
    [b"", b"ping payload", bytes(range(125))],
    ids=["empty", "short", "125-bytes"],
)
async def test_ping_is_answered_with_a_pong_carrying_the_same_payload(
    server: EchoServer, caplog: pytest.LogCaptureFixture, payload: bytes
) -> None:
    conn = await ConformanceSocket.open(server.port)
    await conn.send_frame(PING, payload)
    # RFC 6455 §5.5.3: a Pong in response to a Ping has the identical Application data.
    frame = await conn.read_frame()
    assert (frame.fin, frame.opcode, frame.payload) == (True, PONG, payload)
    await conn.echo_round_trip()
    await conn.close_cleanly()
    await assert_still_serves(server.port, caplog)


async def test_unsolicited_pong_is_ignored(
    server: EchoServer, caplog: pytest.LogCaptureFixture
) -> None:
    # RFC 6455 §5.5.3: a Pong may be sent unsolicited (a heartbeat); no response is expected.
    conn = await ConformanceSocket.open(server.port)
    await conn.send_frame(PONG, b"unsolicited")
    await conn.send_frame(TEXT, b"after the pong")
    frame = await conn.read_frame()
    assert (frame.opcode, frame.payload) == (TEXT, b"after the pong")
    await conn.close_cleanly()
    await assert_still_serves(server.port, caplog)


@pytest.mark.parametrize("opcode", [PING, PONG, CLOSE], ids=["ping", "pong", "close"])
async def test_control_frame_over_125_bytes_fails_with_1002(
    server: EchoServer, caplog: pytest.LogCaptureFixture, opcode: int
) -> None:
    # RFC 6455 §5.5: all control frames MUST have a payload length of 125 bytes or less.
    payload = close_payload(1000, "x" * 124) if opcode == CLOSE else b"x" * 126
    assert len(payload) == 126
    await assert_connection_failed(server.port, caplog, client_frame(opcode, payload), 1002)


@pytest.mark.parametrize("opcode", [PING, PONG, CLOSE], ids=["ping", "pong", "close"])
async def test_fragmented_control_frame_fails_with_1002(
    server: EchoServer, caplog: pytest.LogCaptureFixture, opcode: int
) -> None:
    # RFC 6455 §5.5: control frames MUST NOT be fragmented.
    payload = close_payload(1000) if opcode == CLOSE else b"part"
    data = client_frame(opcode, payload, fin=False)
    await assert_connection_failed(server.port, caplog, data, 1002)


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (1000, "bye"),
        (1001, "going away"),
        (1002, ""),
        (1003, "no binary"),
        (1007, ""),
        (1008, "policy"),
        (1009, ""),
        (1010, "need ext"),
        (1011, "oops"),
        (1012, ""),
        (1013, ""),
        (1014, ""),
        (3000, "registered"),
        (4000, "private"),
        (4999, "x" * 123),
    ],
)
async def test_close_is_answered_with_the_same_code_then_tcp_is_closed(
    server: EchoServer, caplog: pytest.LogCaptureFixture, code: int, reason: str
) -> None:
    conn = await ConformanceSocket.open(server.port)
    await conn.send_frame(CLOSE, close_payload(code, reason))
    # RFC 6455 §5.5.1: the endpoint answers a Close with a Close, typically echoing
    # the status code; §7.1.1: the server then closes the TCP connection first.
    frame = await conn.read_frame()
    assert (frame.opcode, frame.close_code) == (CLOSE, code)
    await conn.expect_eof()
    await conn.aclose()
    await assert_still_serves(server.port, caplog)


async def test_close_without_status_is_answered_with_a_close_frame(
    server: EchoServer, caplog: pytest.LogCaptureFixture
) -> None:
    conn = await ConformanceSocket.open(server.port)
    await conn.send_frame(CLOSE, b"")
    frame = await conn.read_frame()
    # No code to echo (1005 may not be sent, §7.4.1): an empty body or 1000 are both fine.
    assert frame.opcode == CLOSE
    assert frame.close_code in (None, 1000)
    await conn.expect_eof()
    await conn.aclose()
    await assert_still_serves(server.port, caplog)


async def test_nothing_is_sent_after_the_close_frame_even_when_data_follows(
    server: EchoServer, caplog: pytest.LogCaptureFixture
) -> None:
    conn = await ConformanceSocket.open(server.port)
    # RFC 6455 §5.5.1: after sending a Close, the endpoint MUST NOT send more data
    # frames; data arriving after the peer's Close is not processed.
    await conn.send(client_frame(CLOSE, close_payload(1000)) + client_frame(TEXT, b"too late"))
    frame = await conn.read_frame()
    assert (frame.opcode, frame.close_code) == (CLOSE, 1000)
    await conn.expect_eof()
    await conn.aclose()
    await assert_still_serves(server.port, caplog)


@pytest.mark.parametrize(
    "code",
    [
        0,
        999,
        1004,
        1005,
        1006,
        1015,
        1016,
        1100,
        2000,
        2999,
    ],
)
async def test_close_with_a_code_that_may_not_be_sent_fails_with_1002(
    server: EchoServer, caplog: pytest.LogCaptureFixture, code: int
) -> None:
    # RFC 6455 §7.4.1/§7.4.2: 0-999 are never used, 1004 is reserved, 1005, 1006 and
    # 1015 MUST NOT be set in a Close frame, 1016-2999 are reserved for the protocol.
    # A Close carrying one is a protocol error (Autobahn TestSuite case 7.9.x).
    data = client_frame(CLOSE, close_payload(code, "bad code"))
    await assert_connection_failed(server.port, caplog, data, 1002)


async def test_close_with_a_one_byte_payload_fails_with_1002(
    server: EchoServer, caplog: pytest.LogCaptureFixture
) -> None:
    # RFC 6455 §5.5.1: a Close body starts with a 2-byte code; one byte is malformed.
    await assert_connection_failed(server.port, caplog, client_frame(CLOSE, b"\x03"), 1002)


async def test_close_reason_with_invalid_utf8_fails_with_1007(
    server: EchoServer, caplog: pytest.LogCaptureFixture
) -> None:
    # RFC 6455 §5.5.1: the close reason is UTF-8; §8.1 invalid UTF-8 fails with 1007.
    data = client_frame(CLOSE, close_payload(1000) + b"\xff\xfe")
    await assert_connection_failed(server.port, caplog, data, 1007)


async def test_ping_between_two_messages_does_not_disturb_them(
    server: EchoServer, caplog: pytest.LogCaptureFixture
) -> None:
    conn = await ConformanceSocket.open(server.port)
    await conn.send(
        client_frame(TEXT, b"first")
        + client_frame(PING, b"keepalive")
        + client_frame(TEXT, b"second")
    )
    frames = [await asyncio.wait_for(conn.read_frame(), 5) for _ in range(3)]
    # Messages keep their order; the pong may come whenever practical (§5.5.2).
    assert [f.payload for f in frames if f.opcode == TEXT] == [b"first", b"second"]
    assert [f.payload for f in frames if f.opcode == PONG] == [b"keepalive"]
    await conn.close_cleanly()
    await assert_still_serves(server.port, caplog)
