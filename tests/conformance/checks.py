"""RFC 6455 conformance: a raw client that checks every frame the server sends, and case helpers.

Every frame read through :class:`ConformanceSocket` is checked as it arrives:
never masked (RFC 6455 §5.1), no reserved bits without a negotiated extension
(§5.2), a control frame is final and at most 125 bytes (§5.5), the length uses
the minimal encoding (§5.2), and no payload carries a Python traceback. The
bytes themselves are encoded and decoded by :mod:`tests.support.wire`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

import pytest

from ..conftest import spry_records
from ..support.polling import eventually
from ..support.rawws import TIMEOUT, HTTPReply, RawWebSocket
from ..support.wire import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    Frame,
    accept_for,
    client_frame,
    close_payload,
    new_key,
)

__all__ = [
    "BINARY",
    "CLOSE",
    "CONTINUATION",
    "PING",
    "PONG",
    "TEXT",
    "ConformanceSocket",
    "accept_for",
    "assert_connection_failed",
    "assert_no_errors",
    "assert_no_traceback",
    "assert_still_serves",
    "client_frame",
    "expect_failure",
    "wait_for_warning",
]

TRACEBACK_MARKERS = (b"Traceback (most recent call last)", b'File "')


def assert_no_traceback(data: bytes) -> None:
    for marker in TRACEBACK_MARKERS:
        assert marker not in data, f"the server sent a Python traceback: {data[:500]!r}"


def minimal_length_bytes(length: int) -> int:
    return 0 if length < 126 else 2 if length < 1 << 16 else 8


class ConformanceSocket(RawWebSocket):
    """A raw client whose every received frame is checked against RFC 6455."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        super().__init__(reader, writer)
        self.received: list[Frame] = []
        #: RSV bits the server may set: RSV1 once permessage-deflate was agreed.
        self.allowed_rsv = 0

    @classmethod
    async def open(
        cls, port: int, path: str = "/echo", headers: Mapping[str, str | None] | None = None
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

    async def request(
        self,
        path: str = "/chat",
        *,
        method: str = "GET",
        headers: Mapping[str, str | None] | None = None,
        version: str = "HTTP/1.1",
    ) -> HTTPReply:
        reply = await super().request(path, method=method, headers=headers, version=version)
        assert_no_traceback(reply.body)
        return reply

    async def read_frame(self) -> Frame:
        frame = await super().read_frame()
        payload = frame.payload
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

    async def read_frame_or_eof(self) -> Frame | None:
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
) -> Frame | None:
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

    def matching() -> logging.LogRecord | None:
        for record in spry_records(caplog, logging.WARNING):
            if all(needle in record.getMessage() for needle in needles):
                return record
        return None

    def seen() -> str:
        warnings = [r.getMessage() for r in spry_records(caplog, logging.WARNING)]
        return f"an aiohttp_spry WARNING with {needles}; got {warnings}"

    return await eventually(matching, TIMEOUT, what=seen)


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
