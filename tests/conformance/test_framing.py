"""RFC 6455 §5: data frames, fragmentation, UTF-8, reserved bits, opcodes and masking."""

from __future__ import annotations

import asyncio

import pytest

from .checks import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    ConformanceSocket,
    assert_connection_failed,
    assert_still_serves,
    client_frame,
    expect_failure,
    wait_for_warning,
)
from .conftest import EchoServer

DEFLATE: dict[str, str | None] = {"Sec-WebSocket-Extensions": "permessage-deflate"}
# 'é' is 2 bytes, '€' 3 and '😀' 4 in UTF-8.
MULTIBYTE = "héllo € 😀 wörld"


async def test_text_message_is_echoed_as_one_text_frame(
    server: EchoServer, caplog: pytest.LogCaptureFixture
) -> None:
    conn = await ConformanceSocket.open(server.port)
    await conn.send_frame(TEXT, MULTIBYTE.encode())
    frame = await conn.read_frame()
    assert (frame.fin, frame.opcode, frame.payload) == (True, TEXT, MULTIBYTE.encode())
    await conn.close_cleanly()
    await assert_still_serves(server.port, caplog)


@pytest.mark.parametrize(
    ("size", "length_bytes"),
    [(0, 0), (125, 0), (126, 2), (65535, 2), (65536, 8)],
    ids=["empty", "7-bit-max", "16-bit-min", "16-bit-max", "64-bit-min"],
)
async def test_binary_round_trip_keeps_payload_and_uses_minimal_length_encoding(
    server: EchoServer, caplog: pytest.LogCaptureFixture, size: int, length_bytes: int
) -> None:
    payload = bytes(i % 251 for i in range(size))
    conn = await ConformanceSocket.open(server.port)
    await conn.send_frame(BINARY, payload)
    assert await conn.read_message() == (BINARY, payload)
    # Each server frame is checked for the minimal encoding as it is read; this
    # pins which one (RFC 6455 §5.2: 7-bit up to 125, 16-bit up to 65535, else 64-bit).
    assert [f.length_bytes for f in conn.received] == [length_bytes] * len(conn.received)
    await conn.close_cleanly()
    await assert_still_serves(server.port, caplog)


async def test_three_text_fragments_with_a_ping_between_are_one_message(
    server: EchoServer, caplog: pytest.LogCaptureFixture
) -> None:
    conn = await ConformanceSocket.open(server.port)
    await conn.send(
        client_frame(TEXT, b"frag-one ", fin=False)
        + client_frame(PING, b"between fragments")
        + client_frame(CONTINUATION, b"frag-two ", fin=False)
        + client_frame(CONTINUATION, b"frag-three")
    )
    # RFC 6455 §5.4: control frames may be injected in the middle of a fragmented
    # message; the ping is answered and the fragments still make one message.
    assert await conn.read_message() == (TEXT, b"frag-one frag-two frag-three")
    if not any(f.opcode == PONG for f in conn.received):
        await conn.read_frame()
    pongs = [f.payload for f in conn.received if f.opcode == PONG]
    assert pongs == [b"between fragments"]
    assert [f.opcode for f in conn.received if f.opcode < 0x8] == [TEXT]
    await conn.close_cleanly()
    await assert_still_serves(server.port, caplog)


async def test_utf8_split_inside_multibyte_characters_across_fragments_is_accepted(
    server: EchoServer, caplog: pytest.LogCaptureFixture
) -> None:
    encoded = MULTIBYTE.encode()
    # Cut inside 'é' (2 bytes), '€' (3 bytes) and '😀' (4 bytes).
    cuts = [2, encoded.index("€".encode()) + 1, encoded.index("😀".encode()) + 3]
    pieces = [encoded[a:b] for a, b in zip([0, *cuts], [*cuts, len(encoded)], strict=True)]
    for piece in pieces[:-1]:
        with pytest.raises(UnicodeDecodeError):
            piece.decode()  # each fragment on its own is not valid UTF-8
    conn = await ConformanceSocket.open(server.port)
    frames = [client_frame(TEXT, pieces[0], fin=False)]
    frames += [client_frame(CONTINUATION, piece, fin=False) for piece in pieces[1:-1]]
    frames.append(client_frame(CONTINUATION, pieces[-1]))
    await conn.send(b"".join(frames))
    assert await conn.read_message() == (TEXT, encoded)
    await conn.close_cleanly()
    await assert_still_serves(server.port, caplog)


@pytest.mark.parametrize(
    "frames",
    [
        [client_frame(TEXT, b"\xff\xfe")],
        [client_frame(TEXT, b"overlong \xc0\xaf")],
        [client_frame(TEXT, b"surrogate \xed\xa0\x80")],
        [client_frame(TEXT, b"truncated \xe2\x82")],
        [client_frame(TEXT, b"ok so far ", fin=False), client_frame(CONTINUATION, b"then \xff")],
        [client_frame(TEXT, b"ends mid-character \xf0\x9f", fin=False), client_frame(CONTINUATION)],
    ],
    ids=[
        "invalid-bytes",
        "overlong",
        "surrogate",
        "truncated",
        "invalid-in-second-fragment",
        "fragments-end-mid-character",
    ],
)
async def test_text_with_invalid_utf8_fails_with_1007(
    server: EchoServer, caplog: pytest.LogCaptureFixture, frames: list[bytes]
) -> None:
    # RFC 6455 §8.1: invalid UTF-8 in a text message fails the connection, 1007 (§7.4.1).
    await assert_connection_failed(server.port, caplog, b"".join(frames), 1007)


@pytest.mark.parametrize("rsv", [0b100, 0b010, 0b001, 0b111], ids=["rsv1", "rsv2", "rsv3", "all"])
@pytest.mark.parametrize("opcode", [TEXT, BINARY, PING], ids=["text", "binary", "ping"])
async def test_reserved_bits_without_an_extension_fail_with_1002(
    server: EchoServer, caplog: pytest.LogCaptureFixture, rsv: int, opcode: int
) -> None:
    # RFC 6455 §5.2: a nonzero RSV bit no negotiated extension defines fails the connection.
    data = client_frame(opcode, b"reserved", rsv=rsv)
    await assert_connection_failed(server.port, caplog, data, 1002)


async def test_rsv1_on_a_continuation_frame_fails_with_1002_even_with_permessage_deflate(
    server: EchoServer, caplog: pytest.LogCaptureFixture
) -> None:
    # RFC 7692 §6.1: RSV1 ("compressed") is only for the first frame of a message.
    data = client_frame(BINARY, b"abc", fin=False) + client_frame(CONTINUATION, b"x", rsv=0b100)
    await assert_connection_failed(server.port, caplog, data, 1002, headers=DEFLATE)


async def test_rsv1_on_a_control_frame_fails_with_1002_with_permessage_deflate(
    server: EchoServer, caplog: pytest.LogCaptureFixture
) -> None:
    # RFC 7692 §6.1: an endpoint MUST NOT set RSV1 on control frames; receiving one fails.
    # aiohttp's reader ignores it there "for interop"; websocket/masking.py refuses it.
    data = client_frame(PING, b"compressed?", rsv=0b100)
    await assert_connection_failed(server.port, caplog, data, 1002, headers=DEFLATE)


async def test_permessage_deflate_is_agreed_when_offered(
    server: EchoServer, caplog: pytest.LogCaptureFixture
) -> None:
    # The two tests above rely on it: RSV1 is then allowed on a message's first frame.
    conn = await ConformanceSocket.open(server.port, headers=DEFLATE)
    assert conn.allowed_rsv == 0b100
    await conn.close_cleanly()
    await assert_still_serves(server.port, caplog)


@pytest.mark.parametrize("opcode", [0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF])
async def test_unknown_opcode_fails_with_1002(
    server: EchoServer, caplog: pytest.LogCaptureFixture, opcode: int
) -> None:
    # RFC 6455 §5.2: an unknown opcode fails the connection.
    await assert_connection_failed(server.port, caplog, client_frame(opcode, b"what"), 1002)


async def test_unmasked_first_client_frame_closes_the_connection(
    server: EchoServer, caplog: pytest.LogCaptureFixture
) -> None:
    # RFC 6455 §5.1: the server MUST close the connection on an unmasked frame and
    # MAY send a close frame with 1002 first; either a 1002 close or EOF passes.
    data = client_frame(TEXT, b"not masked", mask=False)
    await assert_connection_failed(server.port, caplog, data, 1002, drop_allowed=True)


async def test_unmasked_client_frame_after_masked_ones_closes_the_connection(
    server: EchoServer, caplog: pytest.LogCaptureFixture
) -> None:
    # As above, for a frame later in the connection: every client frame must be masked.
    data = client_frame(TEXT, b"not masked", mask=False)
    await assert_connection_failed(
        server.port, caplog, data, 1002, after_echo=True, drop_allowed=True
    )


@pytest.mark.parametrize("fin", [True, False], ids=["final", "non-final"])
async def test_continuation_frame_without_a_started_message_fails_with_1002(
    server: EchoServer, caplog: pytest.LogCaptureFixture, fin: bool
) -> None:
    # RFC 6455 §5.4: a continuation frame continues a fragmented message; none is open.
    data = client_frame(CONTINUATION, b"orphan", fin=fin)
    await assert_connection_failed(server.port, caplog, data, 1002)


@pytest.mark.parametrize(
    "frames",
    [
        [client_frame(TEXT, b"open ", fin=False), client_frame(TEXT, b"new message")],
        [client_frame(TEXT, b"open ", fin=False), client_frame(BINARY, b"new", fin=False)],
        [client_frame(BINARY, b"open", fin=False), client_frame(TEXT, b"new message")],
        # aiohttp alone misses this one (it sees an open message by its buffered
        # bytes); websocket/masking.py tracks fragmentation in the frame headers.
        [client_frame(TEXT, b"", fin=False), client_frame(TEXT, b"new message")],
    ],
    ids=["final-text-in-text", "first-binary-in-text", "final-text-in-binary", "after-empty-first"],
)
async def test_new_data_frame_while_a_fragmented_message_is_open_fails_with_1002(
    server: EchoServer, caplog: pytest.LogCaptureFixture, frames: list[bytes]
) -> None:
    # RFC 6455 §5.4: fragments of one message are never interleaved with another message.
    await assert_connection_failed(server.port, caplog, b"".join(frames), 1002)


async def test_no_frame_the_server_sends_is_masked_or_sets_reserved_bits(
    server: EchoServer, caplog: pytest.LogCaptureFixture
) -> None:
    conn = await ConformanceSocket.open(server.port)
    await conn.send_frame(TEXT, b"text")
    await conn.send_frame(BINARY, b"\x00binary\xff")
    await conn.send_frame(BINARY, bytes(70000))
    await conn.send_frame(PING, b"ping")
    await conn.send_frame(CLOSE, b"\x03\xe8bye")
    frames = [await conn.read_frame() for _ in range(5)]
    await conn.expect_eof()
    await conn.aclose()
    assert sorted(f.opcode for f in frames) == [TEXT, BINARY, BINARY, CLOSE, PONG]
    # RFC 6455 §5.1: a server MUST NOT mask frames; §5.2: RSV bits stay 0 without an extension.
    assert [(f.masked, f.rsv) for f in frames] == [(False, 0)] * 5
    await assert_still_serves(server.port, caplog)


@pytest.mark.parametrize("masked", [True, False], ids=["masked", "unmasked"])
async def test_first_frame_mask_bit_is_judged_when_the_header_arrives_byte_by_byte(
    server: EchoServer, caplog: pytest.LogCaptureFixture, masked: bool
) -> None:
    # The frame's first two bytes reach the server in separate reads.
    data = client_frame(TEXT, b"slowly", mask=masked)
    conn = await ConformanceSocket.open(server.port)
    await conn.send(data[:1])
    await asyncio.sleep(0.05)
    await conn.send(data[1:2])
    if masked:
        await asyncio.sleep(0.05)
        await conn.send(data[2:])
        assert await conn.read_message() == (TEXT, b"slowly")
        await conn.close_cleanly()
    else:
        # Two bytes are enough to see the MASK bit: the server refuses without the rest.
        await expect_failure(conn, 1002, drop_allowed=True)
        await wait_for_warning(caplog)
    await assert_still_serves(server.port, caplog)
