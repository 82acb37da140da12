"""RFC 6455 §5.1 masking (every client frame, the handshake's tail included), and the
aiohttp internals it depends on."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import random
import re
import struct
from typing import Any

import pytest
from aiohttp import WebSocketError, web

from aiohttp_spry import BinaryDataReceived, Event, Spry, TextDataReceived, WebSocket
from aiohttp_spry.websocket import masking
from aiohttp_spry.websocket.masking import (
    _PARSER_ATTRIBUTE,
    Violation,
    _FrameCheck,
    mask_check_available,
    warn_if_unavailable,
)

from .conftest import ClientFactory, spry_records
from .support.rawws import TIMEOUT, RawWebSocket
from .support.wire import Frame
from .support.wire import client_frame as encode_frame

TEXT, BINARY, CONTINUATION, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA
MIB = 1 << 20

seen_parsers: list[object] = []


async def echo(ws: WebSocket) -> None:
    seen_parsers.append(getattr(ws.event.request.protocol, _PARSER_ATTRIBUTE, None))
    async for message in ws.events:
        if isinstance(message, TextDataReceived):
            await ws.send_text(message.text)
        elif isinstance(message, BinaryDataReceived):
            await ws.send_bytes(message.data)


def echo_spry() -> Spry:
    spry = Spry()

    @spry.route("/ws")
    def route(event: Event) -> web.StreamResponse:
        return event.ws.upgrade(echo)

    return spry


async def echo_port(serve: ClientFactory) -> int:
    client = await serve(echo_spry())
    assert client.port is not None
    return client.port


async def connect(port: int) -> RawWebSocket:
    conn = await RawWebSocket.connect("127.0.0.1", port)
    assert (await conn.request("/ws")).status == 101
    return conn


def handshake(path: str = "/ws") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


async def connect_sending(port: int, data: bytes) -> RawWebSocket:
    """Handshake and ``data`` in one write (one TCP segment on loopback), then the 101."""
    conn = await RawWebSocket.connect("127.0.0.1", port)
    await conn.send(handshake() + data)
    head = await asyncio.wait_for(conn.reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    assert head.startswith(b"HTTP/1.1 101 "), head
    return conn


def zero_masked(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """A masked frame whose key is 0000, so the payload goes out as it is (cheap for 1 MiB)."""
    unmasked = encode_frame(opcode, payload, fin=fin, mask=False)
    cut = len(unmasked) - len(payload)
    return bytes([unmasked[0], unmasked[1] | 0x80]) + unmasked[2:cut] + b"\0\0\0\0" + payload


async def read_frames_until_close(conn: RawWebSocket) -> tuple[list[Frame], Frame]:
    """Every frame before the close frame, and the close frame; then the server ends TCP."""
    before: list[Frame] = []
    for _ in range(100):
        frame = await conn.read_frame()
        if frame.opcode == CLOSE:
            assert await conn.read_to_eof() == b"", "data after the close frame"
            return before, frame
        before.append(frame)
    raise AssertionError("no close frame in 100 frames")


async def expect_refused(conn: RawWebSocket, *, echoes: list[bytes] | None = None) -> list[Frame]:
    """Exactly ``echoes`` come back, then a close frame with 1002, then EOF."""
    before, close = await read_frames_until_close(conn)
    await conn.aclose()
    assert [f.payload for f in before] == (echoes or [])
    assert close.close_code == 1002, close
    return before


def one_warning(caplog: pytest.LogCaptureFixture, *needles: str) -> logging.LogRecord:
    [warning] = spry_records(caplog, logging.WARNING)
    message = warning.getMessage()
    for needle in ("1002", "GET /ws peer=127.0.0.1", *needles):
        assert needle in message, message
    return warning


async def assert_echoes(port: int, text: bytes = b"still serving") -> None:
    conn = await connect(port)
    await conn.send_frame(TEXT, text)
    assert (await conn.read_frame()).payload == text
    await conn.aclose()


# -- the aiohttp internals (canaries) ---------------------------------------


async def test_aiohttp_internals_the_check_needs_are_where_we_expect_them(
    serve: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # If this fails, aiohttp changed RequestHandler._payload_parser/_message_tail/
    # _upgraded or WebSocketResponse._reader: websocket/masking.py must be adapted first.
    assert mask_check_available()
    assert warn_if_unavailable()
    assert spry_records(caplog, logging.WARNING) == []
    seen_parsers.clear()
    conn = await connect(await echo_port(serve))
    await conn.send_frame(TEXT, b"hi")
    assert (await conn.read_frame()).payload == b"hi"
    [parser] = seen_parsers
    assert type(parser) is _FrameCheck
    await conn.aclose()


def test_unavailable_internals_log_one_startup_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(masking, "_TAIL_ATTRIBUTE", "_renamed_in_a_future_aiohttp")
    assert not mask_check_available()
    assert not warn_if_unavailable()
    [warning] = spry_records(caplog, logging.WARNING)
    assert "RFC 6455 §5.1" in warning.getMessage()
    assert "_renamed_in_a_future_aiohttp" in warning.getMessage()


@pytest.mark.parametrize(
    ("constant", "value"),
    [
        ("_PARSER_ATTRIBUTE", "_renamed_parser"),
        ("_TAIL_ATTRIBUTE", "_renamed_tail"),
        ("_UPGRADED_ATTRIBUTE", "_renamed_upgraded"),
        ("_QUEUE_ATTRIBUTE", "_renamed_queue"),
    ],
)
async def test_changed_internals_break_nothing(
    serve: ClientFactory, monkeypatch: pytest.MonkeyPatch, constant: str, value: str
) -> None:
    monkeypatch.setattr(masking, constant, value)
    seen_parsers.clear()
    port = await echo_port(serve)
    conn = await connect_sending(port, zero_masked(TEXT, b"tail"))
    assert (await conn.read_frame()).payload == b"tail"
    await conn.send_frame(TEXT, b"then this")
    assert (await conn.read_frame()).payload == b"then this"
    await conn.aclose()
    assert type(seen_parsers[0]) is not _FrameCheck  # served by aiohttp alone


# -- every client frame -------------------------------------------------------


async def test_unmasked_first_frame_closes_with_1002_and_logs_one_warning(
    serve: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    conn = await connect(await echo_port(serve))
    await conn.send_frame(TEXT, b"hello", mask=False)
    await expect_refused(conn)
    one_warning(caplog, "unmasked client frame")


@pytest.mark.parametrize(
    ("opcode", "payload"),
    [(TEXT, b"UNMASKED second"), (BINARY, b"\x00\x01"), (PING, b"p"), (PONG, b"q"), (CLOSE, b"")],
    ids=["text", "binary", "ping", "pong", "close"],
)
async def test_unmasked_frame_after_a_masked_one_closes_with_1002(
    serve: ClientFactory, caplog: pytest.LogCaptureFixture, opcode: int, payload: bytes
) -> None:
    # No echo, no pong, no 1000 answer to a close: only the 1002.
    conn = await connect(await echo_port(serve))
    await conn.send_frame(TEXT, b"masked first")
    assert (await conn.read_frame()).payload == b"masked first"
    await conn.send_frame(opcode, payload, mask=False)
    await expect_refused(conn)
    one_warning(caplog, "unmasked client frame")


async def test_unmasked_continuation_frame_closes_with_1002(
    serve: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    conn = await connect(await echo_port(serve))
    await conn.send_frame(TEXT, b"first half, ", fin=False)
    await conn.send_frame(CONTINUATION, b"UNMASKED second half", mask=False)
    await expect_refused(conn)
    one_warning(caplog, "unmasked client frame")


async def test_unmasked_frame_in_the_handshakes_write_closes_with_1002(
    serve: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # Also the canary for the tail: aiohttp parses it inside prepare(), from
    # RequestHandler._message_tail; if that moves, this frame gets echoed.
    conn = await connect_sending(
        await echo_port(serve), encode_frame(TEXT, b"UNMASKED with the handshake", mask=False)
    )
    await expect_refused(conn)
    one_warning(caplog, "unmasked client frame")


async def test_aiohttp_prepare_runs_without_yielding_when_no_signal_can_wait(
    aiohttp_client: Any,
) -> None:
    # Canary for masking._prepare_may_yield: with no on_response_prepare handlers
    # and nothing buffered, aiohttp's WebSocketResponse.prepare() never lets the
    # loop run, so no byte can reach its reader before the check is installed.
    yielded: list[bool] = []

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        ran: list[bool] = []
        asyncio.get_running_loop().call_soon(ran.append, True)
        await ws.prepare(request)
        yielded.append(bool(ran))
        await ws.close()
        return ws

    app = web.Application()
    app.router.add_get("/raw", handler)
    client = await aiohttp_client(app)
    ws = await client.ws_connect("/raw")
    await ws.receive()
    await ws.close()
    assert yielded == [False]


async def test_frames_arriving_while_a_prepare_signal_waits_are_checked(
    aiohttp_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # An on_response_prepare handler that waits lets the client's frames arrive
    # inside prepare(): the connection is paused meanwhile, so they are checked too.
    app = web.Application()
    echo_spry().init_app(app)
    arrived = asyncio.Event()

    async def slow_signal(request: web.Request, response: web.StreamResponse) -> None:
        await asyncio.wait_for(arrived.wait(), TIMEOUT)
        await asyncio.sleep(0.05)  # the frames below are in the kernel by now

    app.on_response_prepare.append(slow_signal)
    client = await aiohttp_client(app)
    conn = await RawWebSocket.connect("127.0.0.1", client.port)
    await conn.send(handshake())
    await asyncio.sleep(0.05)
    await conn.send(encode_frame(TEXT, b"good") + encode_frame(TEXT, b"UNMASKED", mask=False))
    arrived.set()
    head = await asyncio.wait_for(conn.reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    assert head.startswith(b"HTTP/1.1 101 "), head
    await expect_refused(conn, echoes=[b"good"])
    one_warning(caplog, "unmasked client frame")


async def test_masked_frames_in_the_handshakes_write_are_echoed(serve: ClientFactory) -> None:
    port = await echo_port(serve)
    conn = await connect_sending(port, encode_frame(TEXT, b"one") + encode_frame(TEXT, b"two"))
    assert [(await conn.read_frame()).payload for _ in range(2)] == [b"one", b"two"]
    await conn.send_frame(TEXT, b"three")
    assert (await conn.read_frame()).payload == b"three"
    await conn.aclose()


async def test_good_frames_before_an_unmasked_one_in_the_handshakes_write_are_handled(
    serve: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    data = (
        encode_frame(TEXT, b"one")
        + encode_frame(TEXT, b"two")
        + encode_frame(TEXT, b"UNMASKED", mask=False)
        + encode_frame(TEXT, b"after")
    )
    conn = await connect_sending(await echo_port(serve), data)
    await expect_refused(conn, echoes=[b"one", b"two"])
    one_warning(caplog)


async def test_frames_before_an_unmasked_one_in_the_same_write_are_handled_and_none_after(
    serve: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    conn = await connect(await echo_port(serve))
    good = [f"good {n}".encode() for n in range(5)]
    after = [f"after {n}".encode() for n in range(5)]
    await conn.send(
        b"".join(encode_frame(TEXT, p) for p in good)
        + encode_frame(PING, b"", mask=True)
        + encode_frame(TEXT, b"UNMASKED", mask=False)
        + b"".join(encode_frame(TEXT, p) for p in after)
    )
    before, close = await read_frames_until_close(conn)
    await conn.aclose()
    assert [f.payload for f in before if f.opcode == TEXT] == good
    assert [f.opcode for f in before if f.opcode != TEXT] == [PONG]  # the masked ping's
    assert close.close_code == 1002
    one_warning(caplog)


@pytest.mark.parametrize("size", [5, 300, 70_000], ids=["7-bit", "16-bit", "64-bit"])
async def test_masked_headers_cut_at_every_byte_pass_and_unmasked_ones_are_refused(
    serve: ClientFactory, caplog: pytest.LogCaptureFixture, size: int
) -> None:
    payload = bytes(n % 251 for n in range(size))
    frame = zero_masked(BINARY, payload)
    header = len(frame) - size
    conn = await connect(await echo_port(serve))
    for n in range(header):  # the header one byte per write
        await conn.send(frame[n : n + 1])
        await asyncio.sleep(0.005)
    await conn.send(frame[header:])
    assert (await conn.read_frame()).payload == payload
    # A masked frame and the first byte of an unmasked one, then its second byte.
    bad = encode_frame(TEXT, b"UNMASKED", mask=False)
    await conn.send(encode_frame(TEXT, b"last good") + bad[:1])
    await asyncio.sleep(0.05)
    await conn.send(bad[1:])
    await expect_refused(conn, echoes=[b"last good"])
    one_warning(caplog)


async def test_one_mib_frame_over_many_writes_then_an_unmasked_one(
    serve: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # The payload is not a frame header anywhere: skipped by count, read by read.
    payload = bytes([0x81, 0x05]) * (MIB // 2)  # an unmasked text header, again and again
    frame = zero_masked(BINARY, payload)
    conn = await connect(await echo_port(serve))
    for start in range(0, len(frame), 7_919):
        await conn.send(frame[start : start + 7_919])
    await conn.send(encode_frame(TEXT, b"UNMASKED", mask=False))
    before = await expect_refused(conn, echoes=[payload])
    assert before[0].opcode == BINARY
    one_warning(caplog)


async def test_other_sessions_are_untouched(
    serve: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    port = await echo_port(serve)
    others = [await connect(port) for _ in range(3)]
    bad = await connect(port)
    await bad.send_frame(TEXT, b"masked")
    await bad.send_frame(TEXT, b"UNMASKED", mask=False)
    await expect_refused(bad, echoes=[b"masked"])
    for n, conn in enumerate(others):
        await conn.send_frame(TEXT, f"still here {n}".encode())
        assert (await conn.read_frame()).payload == f"still here {n}".encode()
        await conn.aclose()
    await assert_echoes(port)
    one_warning(caplog)


async def test_refused_handshake_gives_its_tail_back_and_the_connection_reads_on(
    serve: ClientFactory,
) -> None:
    # prepare() raises (aiohttp's 400 for a malformed key): aiohttp gets the held
    # tail back as HTTP and reading resumes, so a pipelined request cut in two
    # writes is answered.
    conn = await RawWebSocket.connect("127.0.0.1", await echo_port(serve))
    refused = re.sub(rb"Sec-WebSocket-Key: \S+", b"Sec-WebSocket-Key: short", handshake())
    pipelined = b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    await conn.send(refused + pipelined[:20])
    first = await asyncio.wait_for(conn.reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    assert first.startswith(b"HTTP/1.1 400 "), first
    length = int(first.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    await asyncio.wait_for(conn.reader.readexactly(length), TIMEOUT)
    await conn.send(pipelined[20:])
    second = await asyncio.wait_for(conn.reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    assert second.startswith(b"HTTP/1.1 426 "), second
    await conn.aclose()


# -- the scanner on its own: frame boundaries across any cut ------------------


class RecordingParser:
    def __init__(self) -> None:
        self.fed = bytearray()

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.fed += data
        return False, b""

    def feed_eof(self) -> None:
        pass


class RecordingQueue:
    def __init__(self) -> None:
        self.exceptions: list[BaseException] = []

    def set_exception(self, exc: BaseException) -> None:
        self.exceptions.append(exc)


def stream_of_frames() -> bytes:
    frames = [zero_masked(TEXT, bytes([0x81]) * size) for size in (0, 1, 125, 126, 65535, 65536)]
    frames += [
        zero_masked(TEXT, b"a", fin=False),
        zero_masked(PING, b""),
        zero_masked(CONTINUATION, b"b"),
        zero_masked(BINARY, b"x" * 200, fin=False),
        zero_masked(PING, b"ping"),
        zero_masked(CONTINUATION, b"", fin=False),
        zero_masked(CONTINUATION, b"end"),
        zero_masked(PONG, b""),
        zero_masked(TEXT, b"after"),
    ]
    return b"".join(frames)


def feed_in_pieces(check: _FrameCheck, data: bytes, cuts: list[int], *, careful: bool) -> bool:
    """Feed ``data`` cut at ``cuts``, stopping as aiohttp does once refused; refused?

    ``careful``: every read through the general path, never the hot loop (they must agree).
    """
    feed = check._feed_carefully if careful else check.feed_data
    for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True):
        eof, rest = feed(data[a:b])
        assert rest == b""
        if eof:
            return True
    return False


@pytest.mark.parametrize("careful", [False, True], ids=["hot", "careful"])
@pytest.mark.parametrize("seed", range(20))
def test_scanner_passes_every_byte_of_good_frames_however_cut(seed: int, careful: bool) -> None:
    data = stream_of_frames()
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(data)), 40 if seed % 2 else 400))
    parser, queue = RecordingParser(), RecordingQueue()
    check = _FrameCheck(parser, queue)
    assert not feed_in_pieces(check, data, cuts, careful=careful)
    assert bytes(parser.fed) == data
    assert queue.exceptions == []


@pytest.mark.parametrize(
    ("bad", "violation"),
    [
        (encode_frame(TEXT, b"no mask", mask=False), Violation.UNMASKED),
        (encode_frame(TEXT, b"m" * 300, mask=False), Violation.UNMASKED),
        (bytes([0xC9, 0x80]) + b"\0\0\0\0", Violation.COMPRESSED_CONTROL),  # RSV1 ping
        (zero_masked(TEXT, b"", fin=False) + zero_masked(TEXT, b"new"), Violation.INTERLEAVED),
    ],
    ids=["unmasked", "unmasked-16-bit", "rsv1-ping", "after-empty-first-fragment"],
)
@pytest.mark.parametrize("careful", [False, True], ids=["hot", "careful"])
@pytest.mark.parametrize("seed", range(10))
def test_scanner_stops_exactly_before_the_bad_frame_however_cut(
    bad: bytes, violation: Violation, seed: int, careful: bool
) -> None:
    good = stream_of_frames()
    if violation is Violation.INTERLEAVED:
        good, bad = good + bad[:6], bad[6:]  # the empty first fragment is good on its own
    data = good + bad + zero_masked(TEXT, b"never seen")
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(data)), 30))
    if seed == 0:
        cuts = sorted({*cuts, len(good) + 1})  # the bad header's two bytes in two reads
    parser, queue = RecordingParser(), RecordingQueue()
    check = _FrameCheck(parser, queue)
    assert feed_in_pieces(check, data, cuts, careful=careful)
    # At most the bad frame's first header byte reached aiohttp's reader, never
    # a whole header (aiohttp's reader needs two bytes to start a frame).
    assert bytes(parser.fed) in (good, good + bad[:1])
    [error] = queue.exceptions
    assert isinstance(error, WebSocketError)
    assert (error.code, str(error)) == (1002, str(violation))


def test_scanner_reads_a_64_bit_length_it_cannot_skip_in_one_read() -> None:
    parser, queue = RecordingParser(), RecordingQueue()
    check = _FrameCheck(parser, queue)
    header = bytes([0x82, 0xFF]) + struct.pack("!Q", 3 * MIB) + b"\0\0\0\0"
    check.feed_data(header)
    for _ in range(3):
        check.feed_data(bytes(MIB))  # payload bytes only: never parsed as headers
    assert check.feed_data(encode_frame(TEXT, b"bad", mask=False)) == (True, b"")
    assert len(parser.fed) == len(header) + 3 * MIB


@pytest.mark.parametrize("seed", range(10))
def test_scanner_walks_runs_of_16_bit_frames_and_stops_before_a_bad_one(seed: int) -> None:
    # The hot loop for 126..65535-byte frames (a 4 KiB echo): several in one read,
    # a 7-bit frame among them, then an unmasked 16-bit frame with good ones after.
    rng = random.Random(seed)
    good = b"".join(
        zero_masked(BINARY, b"k" * rng.choice((126, 300, 4096, 65535)))
        + (zero_masked(TEXT, b"short") if rng.random() < 0.2 else b"")
        for _ in range(12)
    )
    bad = encode_frame(BINARY, b"u" * 4096, mask=False)
    data = good + bad + zero_masked(BINARY, b"a" * 4096)
    cuts = sorted(rng.sample(range(1, len(data)), 5))
    parser, queue = RecordingParser(), RecordingQueue()
    check = _FrameCheck(parser, queue)
    assert feed_in_pieces(check, data, cuts, careful=False)
    assert bytes(parser.fed) in (good, good + bad[:1])
    [error] = queue.exceptions
    assert str(error) == str(Violation.UNMASKED)
    # And the good frames alone, in one read: every byte passed, nothing refused.
    parser, queue = RecordingParser(), RecordingQueue()
    assert not feed_in_pieces(_FrameCheck(parser, queue), good, [], careful=False)
    assert (bytes(parser.fed), queue.exceptions) == (good, [])
