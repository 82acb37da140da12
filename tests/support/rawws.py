"""Raw clients over asyncio streams, for tests that need to see or send exact bytes.

:class:`RawWebSocket` sends a handshake (or anything) and then frames, and reads
frames back as they came; :func:`raw_exchange` sends one request's bytes on a fresh
connection and reads one response. Every wait is bounded.

Example::

    conn = await RawWebSocket.connect("127.0.0.1", port)
    assert (await conn.request("/chat")).status == 101
    await conn.send_frame(TEXT, b"hi")
    frame = await conn.read_frame()
    await conn.aclose()
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import TypeVar, overload

import attrs

from .wire import CLOSE, Frame, build_request, client_frame, new_key, read_frame

__all__ = ["TIMEOUT", "HTTPReply", "RawResponse", "RawWebSocket", "raw_exchange"]

_Socket = TypeVar("_Socket", bound="RawWebSocket")

#: How long any single read or connect of these clients waits, in seconds.
TIMEOUT = 5.0


@attrs.frozen
class HTTPReply:
    """A response head (and body, by ``Content-Length``) as :meth:`RawWebSocket.request` read it."""

    status: int
    headers: dict[str, str]  # lower-case names; the last of repeated headers
    body: bytes


@attrs.define
class RawResponse:
    """An HTTP response as it came over the wire: every header, in order, with its case."""

    status_line: str
    headers: list[tuple[str, str]]
    body: bytes = b""

    @property
    def status(self) -> int:
        return int(self.status_line.split(" ", 2)[1])

    @overload
    def header(self, name: str) -> str | None: ...

    @overload
    def header(self, name: str, default: str) -> str: ...

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first value of header ``name`` (any case), or ``default``."""
        values = self.header_values(name)
        return values[0] if values else default

    def header_values(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


async def read_response_head(reader: asyncio.StreamReader) -> RawResponse:
    """Read a response's status line and headers, up to the blank line (body not read)."""
    raw_head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = raw_head.decode("latin-1").split("\r\n")
    headers = []
    for line in header_lines:
        if line:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
    return RawResponse(status_line, headers)


async def raw_exchange(
    port: int,
    request: bytes,
    *,
    host: str = "127.0.0.1",
    head: bool = False,
    timeout: float = 10.0,
) -> RawResponse:
    """Send ``request`` bytes on a fresh connection and read one response.

    The body is read by ``Content-Length`` (none for 101/204/304 or ``head``),
    otherwise up to EOF. The connection is closed afterwards.

    Raises:
        TimeoutError: no complete response within ``timeout`` seconds.
    """

    async def exchange() -> RawResponse:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(request)
            await writer.drain()
            response = await read_response_head(reader)
            if head or response.status in (101, 204, 304):
                return response
            length = response.header("Content-Length")
            if length is not None:
                response.body = await reader.readexactly(int(length))
            else:
                response.body = await reader.read()
            return response
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    return await asyncio.wait_for(exchange(), timeout)


class RawWebSocket:
    """One connection: send a handshake (or anything), then frames, and read replies."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls: type[_Socket], host: str, port: int | None) -> _Socket:
        """Open a TCP connection (``port`` may come straight from a test client's ``.port``).

        Raises:
            ValueError: ``port`` is ``None`` (the test server is not listening).
        """
        if port is None:
            raise ValueError(f"no port to connect to on {host}: is the test server started?")
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), TIMEOUT)
        return cls(reader, writer)

    async def request(
        self,
        path: str = "/chat",
        *,
        method: str = "GET",
        headers: Mapping[str, str | None] | None = None,
        version: str = "HTTP/1.1",
    ) -> HTTPReply:
        """Send a request (by default a valid handshake) and read the reply's head (and body).

        ``headers`` replace the handshake's own (same spelling), a ``None`` value drops one.
        """
        all_headers = {
            "Host": "127.0.0.1",
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": new_key(),
            "Sec-WebSocket-Version": "13",
        }
        for name, value in (headers or {}).items():
            all_headers.pop(name, None)
            if value is not None:
                all_headers[name] = value
        await self.send(build_request(method, path, all_headers, version=version))
        response = await asyncio.wait_for(read_response_head(self.reader), TIMEOUT)
        reply_headers = {name.lower(): value for name, value in response.headers}
        body = b""
        if response.status != 101 and "content-length" in reply_headers:
            length = int(reply_headers["content-length"])
            body = await asyncio.wait_for(self.reader.readexactly(length), TIMEOUT)
        return HTTPReply(response.status, reply_headers, body)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send_frame(
        self,
        opcode: int,
        payload: bytes = b"",
        *,
        fin: bool = True,
        mask: bool = True,
        rsv: int = 0,
    ) -> None:
        """Send one client frame (see :func:`tests.support.wire.client_frame`)."""
        await self.send(client_frame(opcode, payload, fin=fin, mask=mask, rsv=rsv))

    async def read_frame(self) -> Frame:
        """The next frame (bounded wait), exactly as the server sent it."""
        return await asyncio.wait_for(read_frame(self.reader), TIMEOUT)

    async def read_until_close(self, limit: int = 100) -> Frame:
        """Read frames until a close frame (bounded); raise if the connection ends first."""
        for _ in range(limit):
            frame = await self.read_frame()
            if frame.opcode == CLOSE:
                return frame
        raise AssertionError(f"no close frame in {limit} frames")

    async def read_to_eof(self) -> bytes:
        """Wait (bounded) for the server to end the TCP connection; return what came first."""
        return await asyncio.wait_for(self.reader.read(), TIMEOUT)

    async def aclose(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()
