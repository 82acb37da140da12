"""``max_msg_size``: a message over the limit is refused with 1009 (RFC 6455 §7.4.1).

The ``/small`` route has ``max_msg_size=1024`` (``SMALL_LIMIT``). The README
promises close 1009 and a WARNING for "a bigger message (one frame or many
fragments)".
"""

from __future__ import annotations

import struct

import pytest

from .checks import (
    BINARY,
    CONTINUATION,
    PING,
    TEXT,
    ConformanceSocket,
    assert_connection_failed,
    assert_still_serves,
    client_frame,
)
from .conftest import SMALL_LIMIT, EchoServer


def fragments(opcode: int, payload: bytes, size: int, *, ping_after: int | None = None) -> bytes:
    """``payload`` as frames of ``size`` bytes (the first with ``opcode``), optionally a ping."""
    pieces = [payload[i : i + size] for i in range(0, len(payload), size)]
    frames = []
    for i, piece in enumerate(pieces):
        frames.append(
            client_frame(opcode if i == 0 else CONTINUATION, piece, fin=i == len(pieces) - 1)
        )
        if i == ping_after:
            frames.append(client_frame(PING, b"interleaved"))
    return b"".join(frames)


@pytest.mark.parametrize("opcode", [TEXT, BINARY], ids=["text", "binary"])
async def test_one_frame_over_max_msg_size_fails_with_1009(
    server: EchoServer, caplog: pytest.LogCaptureFixture, opcode: int
) -> None:
    data = client_frame(opcode, b"x" * (SMALL_LIMIT + 1))
    await assert_connection_failed(server.port, caplog, data, 1009, path="/small")


@pytest.mark.parametrize("opcode", [TEXT, BINARY], ids=["text", "binary"])
async def test_many_small_fragments_adding_up_over_max_msg_size_fail_with_1009(
    server: EchoServer, caplog: pytest.LogCaptureFixture, opcode: int
) -> None:
    # 21 fragments of 50 bytes (1050 in all), each far below the limit, and a ping.
    data = fragments(opcode, b"y" * 1050, 50, ping_after=3)
    await assert_connection_failed(server.port, caplog, data, 1009, path="/small", pongs_first=1)


async def test_declared_length_over_max_msg_size_fails_with_1009_before_the_payload(
    server: EchoServer, caplog: pytest.LogCaptureFixture
) -> None:
    # A 64-bit length of 2**40 and no payload: refused on the header, nothing buffered.
    header = bytes([0x80 | BINARY, 0x80 | 127]) + struct.pack("!Q", 1 << 40) + b"mask"
    await assert_connection_failed(server.port, caplog, header, 1009, path="/small")


async def test_message_just_under_max_msg_size_is_echoed(
    server: EchoServer, caplog: pytest.LogCaptureFixture
) -> None:
    conn = await ConformanceSocket.open(server.port, "/small")
    payload = b"z" * (SMALL_LIMIT - 1)
    await conn.send_frame(BINARY, payload)
    assert await conn.read_message() == (BINARY, payload)
    await conn.send(fragments(TEXT, payload, 100, ping_after=0))
    assert await conn.read_message() == (TEXT, payload)
    await conn.close_cleanly()
    await assert_still_serves(server.port, caplog)


@pytest.mark.parametrize("split", [False, True], ids=["one-frame", "fragments"])
async def test_message_of_exactly_max_msg_size_is_echoed(
    server: EchoServer, caplog: pytest.LogCaptureFixture, split: bool
) -> None:
    conn = await ConformanceSocket.open(server.port, "/small")
    payload = b"z" * SMALL_LIMIT
    await conn.send(fragments(BINARY, payload, 256) if split else client_frame(BINARY, payload))
    assert await conn.read_message() == (BINARY, payload)
    await conn.close_cleanly()
    await assert_still_serves(server.port, caplog)
