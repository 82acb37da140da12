"""A raw WebSocket client over asyncio streams, for tests that need to see or send exact bytes."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import struct

import attrs

TIMEOUT = 5.0


@attrs.frozen
class Frame:
    fin: bool
    opcode: int
    payload: bytes

    @property
    def close_code(self) -> int | None:
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None


@attrs.frozen
class HTTPReply:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


def encode_frame(
    opcode: int, payload: bytes = b"", *, fin: bool = True, mask: bool = True
) -> bytes:
    head = bytearray([(0x80 if fin else 0) | opcode])
    mask_bit = 0x80 if mask else 0
    length = len(payload)
    if length < 126:
        head.append(mask_bit | length)
    elif length < 1 << 16:
        head.append(mask_bit | 126)
        head += struct.pack("!H", length)
    else:
        head.append(mask_bit | 127)
        head += struct.pack("!Q", length)
    if not mask:
        return bytes(head) + payload
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes(head) + key + masked


def close_payload(code: int | None, reason: str = "") -> bytes:
    return b"" if code is None else struct.pack("!H", code) + reason.encode()


class RawWebSocket:
    """One connection: send a handshake (or anything), then frames, and read replies."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, host: str, port: int) -> RawWebSocket:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), TIMEOUT)
        return cls(reader, writer)

    async def request(
        self,
        path: str = "/chat",
        *,
        method: str = "GET",
        headers: dict[str, str] | None = None,
        version: str = "HTTP/1.1",
    ) -> HTTPReply:
        """Send a request (by default a valid handshake) and read the reply's head (and body)."""
        all_headers = {
            "Host": "127.0.0.1",
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
            "Sec-WebSocket-Version": "13",
        }
        for name, value in (headers or {}).items():
            all_headers.pop(name, None)
            if value is not None:
                all_headers[name] = value
        lines = [f"{method} {path} {version}", *(f"{k}: {v}" for k, v in all_headers.items())]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await self.writer.drain()
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        reply_headers: dict[str, str] = {}
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                reply_headers[name.strip().lower()] = value.strip()
        status = int(status_line.split()[1])
        body = b""
        if status != 101 and "content-length" in reply_headers:
            length = int(reply_headers["content-length"])
            body = await asyncio.wait_for(self.reader.readexactly(length), TIMEOUT)
        return HTTPReply(status, reply_headers, body)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send_frame(self, opcode: int, payload: bytes = b"", **kwargs: bool) -> None:
        await self.send(encode_frame(opcode, payload, **kwargs))

    async def read_frame(self) -> Frame:
        first, second = await asyncio.wait_for(self.reader.readexactly(2), TIMEOUT)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
        payload = await asyncio.wait_for(self.reader.readexactly(length), TIMEOUT)
        return Frame(bool(first & 0x80), first & 0x0F, payload)

    async def read_until_close(self, limit: int = 100) -> Frame:
        """Read frames until a close frame (bounded); raise if the connection ends first."""
        for _ in range(limit):
            frame = await self.read_frame()
            if frame.opcode == 0x8:
                return frame
        raise AssertionError(f"no close frame in {limit} frames")

    async def read_to_eof(self) -> bytes:
        """Wait (bounded) for the server to end the TCP connection; return what came first."""
        return await asyncio.wait_for(self.reader.read(), TIMEOUT)

    async def aclose(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()
