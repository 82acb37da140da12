"""RFC 6455 on the wire: a raw client that checks every frame the server sends, and case helpers.

Every frame read through :class:`ConformanceSocket` is checked as it arrives:
never masked (RFC 6455 §5.1), no reserved bits without a negotiated extension
(§5.2), a control frame is final and at most 125 bytes (§5.5), the length uses
the minimal encoding (§5.2), and no payload carries a Python traceback.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import os
import struct

import attrs
import pytest

from ..conftest import spry_records
from ..rawws import TIMEOUT, Frame, HTTPReply, RawWebSocket, close_payload, encode_frame

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TRACEBACK_MARKERS = (b"Traceback (most recent call last)", b'File "')


def accept_for(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` a server must answer ``key`` with (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


def new_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def raw_frame(
    opcode: int, payload: bytes = b"", *, fin: bool = True, mask: bool = True, rsv: int = 0
) -> bytes:
    """A client frame; ``rsv`` (0-7) sets RSV1..RSV3 as its bits 2..0."""
    data = encode_frame(opcode, payload, fin=fin, mask=mask)
    return bytes([data[0] | (rsv & 0x7) << 4]) + data[1:]


def assert_no_traceback(data: bytes) -> None:
    for marker in TRACEBACK_MARKERS:
        assert marker not in data, f"the server sent a Python traceback: {data[:500]!r}"


@attrs.frozen
class ServerFrame(Frame):
    """A frame as the server sent it, with the header bits a conformance test checks."""

    rsv: int = 0
    masked: bool = False
    #: Extended payload length bytes used: 0 (7-bit), 2 (16-bit) or 8 (64-bit).
    length_bytes: int = 0


def minimal_length_bytes(length: int) -> int:
    return 0 if length < 126 else 2 if length < 1 << 16 else 8


class ConformanceSocket(RawWebSocket):
    """A raw client whose every received frame is checked against RFC 6455."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        super().__init__(reader, writer)
        self.received: list[ServerFrame] = []
        #: RSV bits the server may set: RSV1 once permessage-deflate was agreed.
        self.allowed_rsv = 0

    @classmethod
    async def connect(cls, host: str, port: int) -> ConformanceSocket:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), TIMEOUT)
        return cls(reader, writer)

    @classmethod
    async def open(
        cls, port: int, path: str = "/echo", headers: dict[str, str | None] | None = None
    ) -> ConformanceSocket:
        """Connect and complete a handshake, checking the 101 answer (RFC 6455 §4.2.2)."""
        conn = await cls.connect("127.0.0.1", port)
        key = new_key()
        reply = await conn.request(path, headers={"Sec-WebSocket-Key": key, **(headers or {})})
        assert reply.status == 101, reply
        assert reply.headers.get("upgrade", "").lower() == "websocket", reply
        assert "upgrade" in reply.headers.get("connection", "").lower(), reply
        assert reply.headers.get("sec-websocket-accept") == accept_for(key), reply
        if "permessage-deflate" in reply.headers.get("sec-websocket-extensions", ""):
            conn.allowed_rsv = 0b100
        return conn

    async def request(self, *args: object, **kwargs: object) -> HTTPReply:
        reply = await super().request(*args, **kwargs)  # type: ignore[arg-type]
        assert_no_traceback(reply.body)
        return reply

    async def _read(self, n: int) -> bytes:
        return await asyncio.wait_for(self.reader.readexactly(n), TIMEOUT)

    async def read_frame(self) -> ServerFrame:
        first, second = await self._read(2)
        masked = bool(second & 0x80)
        length = second & 0x7F
        length_bytes = 0
        if length == 126:
            length_bytes = 2
            (length,) = struct.unpack("!H", await self._read(2))
        elif length == 127:
            length_bytes = 8
            (length,) = struct.unpack("!Q", await self._read(8))
        key = await self._read(4) if masked else b""
        payload = await self._read(length)
        if masked:
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        frame = ServerFrame(
            fin=bool(first & 0x80),
            opcode=first & 0x0F,
            payload=payload,
            rsv=(first >> 4) & 0x7,
            masked=masked,
            length_bytes=length_bytes,
        )
        self.received.append(frame)
        # RFC 6455 §5.1: a server MUST NOT mask any frames that it sends.
        assert not frame.masked, f"the server masked a frame: {frame}"
        # §5.2: reserved bits stay 0 unless an extension defines them.
        assert frame.rsv & ~self.allowed_rsv == 0, f"reserved bits without an extension: {frame}"
        # §5.2: the minimal number of bytes MUST be used to encode the length.
        assert frame.length_bytes == minimal_length_bytes(len(payload)), frame
        if frame.opcode >= 0x8:
            # §5.5: control frames are never fragmented and carry at most 125 bytes.
            assert frame.fin and len(payload) <= 125, frame
        assert_no_traceback(payload)
        return frame

    async def read_frame_or_eof(self) -> ServerFrame | None:
        """The next frame, or ``None`` when the server ended the connection first."""
        try:
            return await self.read_frame()
        except asyncio.IncompleteReadError as eof:
            partial = eof.partial
        except ConnectionError:
            return None
        assert partial == b"", f"the connection ended inside a frame: {partial!r}"
        return None

    async def read_message(self) -> tuple[int, bytes]:
        """The next data message (fragments joined); control frames seen meanwhile are kept."""
        opcode, parts = None, []
        for _ in range(1000):
            frame = await self.read_frame()
            if frame.opcode >= 0x8:
                assert frame.opcode != CLOSE, f"closed instead of a message: {frame}"
                continue
            if opcode is None:
                assert frame.opcode in (TEXT, BINARY), f"message starts with {frame}"
                opcode = frame.opcode
            else:
                assert frame.opcode == CONTINUATION, f"message interrupted by {frame}"
            parts.append(frame.payload)
            if frame.fin:
                return opcode, b"".join(parts)
        raise AssertionError("no complete message in 1000 frames")

    async def expect_eof(self) -> None:
        """The server ends the TCP connection (bounded wait); whatever came first is checked."""
        try:
            rest = await asyncio.wait_for(self.reader.read(), TIMEOUT)
        except ConnectionResetError:
            return
        assert rest == b"", f"data after the close frame: {rest!r}"

    async def echo_round_trip(self, text: str = "still serving") -> None:
        await self.send_frame(TEXT, text.encode())
        assert await self.read_message() == (TEXT, text.encode())

    async def close_cleanly(self) -> None:
        """Client-initiated closing handshake: 1000 echoed, then the server closes TCP."""
        await self.send_frame(CLOSE, close_payload(1000))
        frame = await self.read_until_close()
        assert frame.close_code == 1000, frame
        await self.expect_eof()
        await self.aclose()

    async def aclose(self) -> None:
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            await super().aclose()


async def expect_failure(
    conn: ConformanceSocket, code: int, *, drop_allowed: bool = False, pongs_first: int = 0
) -> ServerFrame | None:
    """The server Fails the WebSocket Connection (RFC 6455 §7.1.7).

    It sends a close frame with ``code`` (or, when ``drop_allowed``, may just
    drop the connection) and then closes TCP. Anything else it sends first,
    an echo in particular, means it accepted the frame it had to refuse; only
    up to ``pongs_first`` pongs (answers to pings sent before the violation) may
    come first.
    """
    frame = await conn.read_frame_or_eof()
    for _ in range(pongs_first):
        # A pong answers a ping sent before the violation (as in a fragmented message).
        if frame is None or frame.opcode != PONG:
            break
        frame = await conn.read_frame_or_eof()
    if frame is None:
        assert drop_allowed, f"connection dropped without the close frame {code}"
        return None
    assert frame.opcode == CLOSE, (
        f"expected close {code}, the server answered with opcode {frame.opcode:#x} "
        f"{frame.payload[:60]!r}: it accepted the frame"
    )
    assert frame.close_code == code, f"expected close {code}, got {frame}"
    await conn.expect_eof()
    await conn.aclose()
    return frame


async def wait_for_warning(caplog: pytest.LogCaptureFixture, *needles: str) -> logging.LogRecord:
    """The aiohttp_spry WARNING whose message contains every needle (waits up to TIMEOUT)."""
    for _ in range(int(TIMEOUT / 0.02)):
        for record in spry_records(caplog, logging.WARNING):
            if all(needle in record.getMessage() for needle in needles):
                return record
        await asyncio.sleep(0.02)
    warnings = [r.getMessage() for r in spry_records(caplog, logging.WARNING)]
    raise AssertionError(f"no aiohttp_spry WARNING with {needles}; got {warnings}")


def assert_no_errors(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing was logged at ERROR or above by any logger (no handler crashed)."""
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
    for record in caplog.records:
        assert_no_traceback(record.getMessage().encode())


async def assert_still_serves(port: int, caplog: pytest.LogCaptureFixture) -> None:
    """A fresh client still gets a handshake, an echo and a clean close; nothing crashed."""
    conn = await ConformanceSocket.open(port)
    await conn.echo_round_trip()
    await conn.close_cleanly()
    assert_no_errors(caplog)


async def assert_connection_failed(
    port: int,
    caplog: pytest.LogCaptureFixture,
    data: bytes,
    code: int,
    *,
    path: str = "/echo",
    headers: dict[str, str | None] | None = None,
    after_echo: bool = False,
    drop_allowed: bool = False,
    pongs_first: int = 0,
) -> None:
    """One failure case from start to end.

    Handshake on ``path`` with ``headers`` (and, with ``after_echo``, one good
    message first),
    send ``data``; the server must fail the connection with ``code`` (or drop
    it, when ``drop_allowed``), log a WARNING naming the code, and then still
    serve a fresh client.
    """
    conn = await ConformanceSocket.open(port, path, headers)
    try:
        if after_echo:
            await conn.echo_round_trip("a good message first")
        await conn.send(data)
        frame = await expect_failure(conn, code, drop_allowed=drop_allowed, pongs_first=pongs_first)
    finally:
        await conn.aclose()
    if frame is None:
        await wait_for_warning(caplog)
    else:
        await wait_for_warning(caplog, str(code))
    await assert_still_serves(port, caplog)
