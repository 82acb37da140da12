"""The shared support package: the wire codec agrees with itself and with RFC 6455's examples."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.polling import eventually
from tests.support.wire import (
    BINARY,
    CLOSE,
    PING,
    SAMPLE_KEY,
    TEXT,
    accept_for,
    client_frame,
    close_payload,
    parse_frame,
    read_frame,
    server_frame,
)


def test_accept_for_the_rfc_sample_key_is_the_rfc_answer() -> None:
    # RFC 6455 §1.3.
    assert accept_for(SAMPLE_KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_server_frame_is_the_rfc_unmasked_hello() -> None:
    # RFC 6455 §5.7: a single-frame unmasked text message "Hello".
    assert server_frame(TEXT, b"Hello") == bytes.fromhex("810548656c6c6f")


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_masked_client_frame_parses_back_with_its_length_encoding(size: int) -> None:
    payload = bytes(i % 251 for i in range(size))
    data = client_frame(BINARY, payload)
    parsed = parse_frame(data + b"next")
    assert parsed is not None
    frame, end = parsed
    assert (frame.fin, frame.opcode, frame.payload, frame.masked) == (True, BINARY, payload, True)
    assert frame.length_bytes == (0 if size < 126 else 2 if size < 65536 else 8)
    assert end == len(data)
    assert parse_frame(data[:-1]) is None  # one byte short: not a frame yet


@pytest.mark.parametrize(
    ("opcode", "payload", "fin", "rsv"),
    [
        (0x3, b"what", True, 0),
        (TEXT, b"rsv", True, 0b101),
        (PING, b"x" * 126, True, 0),
        (PING, b"frag", False, 0),
    ],
    ids=["unknown-opcode", "reserved-bits", "long-control", "fragmented-control"],
)
def test_malformed_client_frames_carry_exactly_the_header_asked_for(
    opcode: int, payload: bytes, fin: bool, rsv: int
) -> None:
    data = client_frame(opcode, payload, fin=fin, rsv=rsv, mask=False)
    assert data[0] == (0x80 if fin else 0) | rsv << 4 | opcode
    assert data.endswith(payload)
    if opcode != 0x3:
        parsed = parse_frame(data)
        assert parsed is not None
        assert (parsed[0].opcode, parsed[0].rsv, parsed[0].fin) == (opcode, rsv, fin)


async def test_read_frame_reads_exactly_one_frame_from_a_stream() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(server_frame(CLOSE, close_payload(1001, "bye")) + b"rest")
    frame = await read_frame(reader)
    assert (frame.opcode, frame.close_code, frame.close_reason) == (CLOSE, 1001, "bye")
    assert await reader.readexactly(4) == b"rest"


async def test_eventually_returns_the_first_truthy_result_sync_or_async() -> None:
    calls: list[int] = []

    def sync() -> int:
        calls.append(1)
        return len(calls) if len(calls) >= 3 else 0

    async def asynchronous() -> str:
        return "done"

    assert await eventually(sync, timeout=1.0, interval=0.001) == 3
    assert await eventually(asynchronous) == "done"


async def test_eventually_names_what_it_awaited_when_it_times_out() -> None:
    def never() -> None:
        raise AssertionError("still 0 subscribers")

    with pytest.raises(AssertionError, match=r"the subscribers.*still 0 subscribers"):
        await eventually(never, timeout=0.05, what="the subscribers")
