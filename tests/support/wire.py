"""RFC 6455 on the wire, as bytes: client frames, server frames, close payloads, handshakes.

Built on ``websockets.frames`` (its ``Frame.serialize`` and ``Frame.parse``), so the
tests and the benchmarks encode and decode frames the way a maintained client does.
Two things it refuses on purpose are needed here, and are done by hand, each in one
place and said so:

- malformed client frames (reserved bits, unknown opcodes, long or fragmented control
  frames), which ``Frame.serialize`` rejects: :func:`client_frame` serializes a valid
  frame and rewrites its first byte;
- the facts a conformance test judges a server frame by (was it masked, which length
  encoding, reserved bits), which ``Frame.parse`` hides or refuses: :func:`read_frame`
  and :func:`parse_frame` read them off the header and let the caller judge.

Example::

    writer.write(client_frame(TEXT, b"hello"))
    frame = await read_frame(reader)
    assert (frame.opcode, frame.payload) == (TEXT, b"hello")
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct
from collections.abc import Generator, Mapping, Sequence

import attrs
from websockets.exceptions import ProtocolError
from websockets.frames import CloseCode, Opcode
from websockets.frames import Frame as _WSFrame

__all__ = [
    "BINARY",
    "CLOSE",
    "CONTINUATION",
    "PING",
    "PONG",
    "SAMPLE_KEY",
    "TEXT",
    "WS_GUID",
    "CloseCode",
    "Frame",
    "Opcode",
    "accept_for",
    "build_request",
    "client_frame",
    "close_payload",
    "handshake_request",
    "new_key",
    "parse_frame",
    "read_frame",
    "server_frame",
]

CONTINUATION, TEXT, BINARY = Opcode.CONT, Opcode.TEXT, Opcode.BINARY
CLOSE, PING, PONG = Opcode.CLOSE, Opcode.PING, Opcode.PONG

#: The GUID RFC 6455 §1.3 appends to the key to compute ``Sec-WebSocket-Accept``.
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: The key of RFC 6455 §1.3's example: fine wherever a server only checks its shape.
SAMPLE_KEY = "dGhlIHNhbXBsZSBub25jZQ=="

_OPCODES = frozenset(int(opcode) for opcode in Opcode)
_FIN = 0x80
_MASK_BIT = 0x80
_RSV_SHIFT = 4


# -- handshakes --------------------------------------------------------------------------


def accept_for(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` a server must answer ``key`` with (RFC 6455 §4.2.2)."""
    # SHA-1 because the RFC says so; nothing here is about security.
    digest = hashlib.sha1((key + WS_GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def new_key() -> str:
    """A fresh random ``Sec-WebSocket-Key`` (16 random bytes, base64)."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


def build_request(
    method: str,
    path: str,
    headers: Mapping[str, str] | Sequence[tuple[str, str]],
    *,
    version: str = "HTTP/1.1",
    body: bytes = b"",
) -> bytes:
    """An HTTP/1.x request head (then ``body``) exactly as given: order, case, duplicates."""
    items = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    lines = [f"{method} {path} {version}", *(f"{name}: {value}" for name, value in items)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def handshake_request(
    host: str,
    path: str = "/",
    *,
    key: str = SAMPLE_KEY,
    headers: Mapping[str, str | None] | None = None,
    method: str = "GET",
    version: str = "HTTP/1.1",
) -> bytes:
    """An RFC 6455 opening handshake for ``path`` on ``host`` (e.g. ``"127.0.0.1:8080"``).

    It offers no subprotocol and no extension; ``headers`` add headers or replace
    the standard ones (case-insensitively), and a ``None`` value drops one.
    """
    merged: dict[str, str] = {
        "Host": host,
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": key,
        "Sec-WebSocket-Version": "13",
    }
    for name, value in (headers or {}).items():
        for existing in [k for k in merged if k.lower() == name.lower()]:
            del merged[existing]
        if value is not None:
            merged[name] = value
    return build_request(method, path, merged, version=version)


# -- frames ------------------------------------------------------------------------------


@attrs.frozen
class Frame:
    """A frame as it came over the wire, payload unmasked.

    ``rsv`` holds RSV1..RSV3 as its bits 2..0; ``masked`` and ``length_bytes`` (0 for
    the 7-bit length, 2 for 16-bit, 8 for 64-bit) say how the header encoded it.
    """

    fin: bool
    opcode: int
    payload: bytes
    rsv: int = 0
    masked: bool = False
    length_bytes: int = 0

    @property
    def close_code(self) -> int | None:
        """The status code of a close frame's payload, or ``None`` when it has none."""
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None

    @property
    def close_reason(self) -> str:
        """The reason of a close frame's payload (``""`` when none)."""
        return self.payload[2:].decode("utf-8", errors="replace")


def close_payload(code: int | None = CloseCode.NORMAL_CLOSURE, reason: str | bytes = "") -> bytes:
    """The payload of a close frame: ``code`` then ``reason``; ``b""`` when ``code`` is None.

    Packed by hand: ``websockets.frames.Close.serialize`` refuses the codes (1005, 999,
    5000, ...) that tests send on purpose to see them refused.
    """
    if code is None:
        return b""
    return struct.pack("!H", code) + (reason.encode() if isinstance(reason, str) else reason)


def client_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    mask: bool = True,
    rsv: int = 0,
) -> bytes:
    """A client-to-server frame, masked with a random key (RFC 6455 §5.3) unless ``mask`` is
    False.

    ``rsv`` (0-7) sets RSV1..RSV3 as its bits 2..0, and ``opcode`` may be any of 0x0-0xF,
    so a test can send the malformed frames a server must refuse: reserved bits, unknown
    opcodes, control frames longer than 125 bytes or not final.
    """
    if not 0 <= opcode <= 0xF or not 0 <= rsv <= 0b111:
        raise ValueError(f"opcode {opcode:#x} or rsv {rsv:#b} does not fit in a frame header")
    valid = opcode in _OPCODES and rsv == 0
    if valid and (opcode < CLOSE or (fin and len(payload) <= 125)):
        return _WSFrame(Opcode(opcode), payload, fin=fin).serialize(mask=mask)
    # websockets refuses to serialize a malformed frame: serialize the payload as a valid
    # data frame (same length, same masking) and write the first byte (FIN, RSV, opcode)
    # by hand; only that byte differs.
    data = _WSFrame(BINARY, payload, fin=fin).serialize(mask=mask)
    first = (_FIN if fin else 0) | rsv << _RSV_SHIFT | opcode
    return bytes([first]) + data[1:]


def server_frame(opcode: int, payload: bytes = b"", *, fin: bool = True) -> bytes:
    """The unmasked server-to-client frame carrying ``payload``, byte for byte."""
    return _WSFrame(Opcode(opcode), payload, fin=fin).serialize(mask=False)


class _UncheckedFrame(_WSFrame):
    """``websockets``' frame without its own checks: the caller judges what the peer sent."""

    def check(self) -> None:
        # Reserved bits and control-frame rules are what a conformance test asserts
        # about the server; refusing the frame here would hide which rule it broke.
        return


class _Bytes:
    """Feeds ``websockets``' generator-based parser: it yields while bytes are missing."""

    def __init__(self, data: bytes | bytearray | memoryview = b"") -> None:
        self.data = data if isinstance(data, memoryview) else bytearray(data)
        self.pos = 0
        self.missing = 0

    def read_exact(self, n: int) -> Generator[None, None, bytes]:
        while len(self.data) - self.pos < n:
            self.missing = n - (len(self.data) - self.pos)
            yield
        chunk = bytes(self.data[self.pos : self.pos + n])
        self.pos += n
        return chunk


def _length_bytes(second: int) -> int:
    code = second & 0x7F
    return 2 if code == 126 else 8 if code == 127 else 0


def _frame(parsed: _WSFrame, head: bytes | bytearray | memoryview) -> Frame:
    return Frame(
        fin=parsed.fin,
        opcode=int(parsed.opcode),
        payload=bytes(parsed.data),
        rsv=(head[0] >> _RSV_SHIFT) & 0b111,
        masked=bool(head[1] & _MASK_BIT),
        length_bytes=_length_bytes(head[1]),
    )


async def read_frame(reader: asyncio.StreamReader) -> Frame:
    """Read one frame from ``reader`` (exactly its bytes), masked or not, as it was sent.

    Raises:
        asyncio.IncompleteReadError: the stream ended before the frame did.
        AssertionError: the opcode is not one RFC 6455 defines.
    """
    head = await reader.readexactly(2)
    source = _Bytes(head)
    parser = _UncheckedFrame.parse(source.read_exact, mask=bool(head[1] & _MASK_BIT))
    try:
        while True:
            next(parser)
            assert isinstance(source.data, bytearray)
            source.data += await reader.readexactly(source.missing)
    except StopIteration as done:
        return _frame(done.value, head)
    except ProtocolError as error:
        raise AssertionError(f"unparsable frame header {head.hex()}: {error}") from error


def parse_frame(buf: bytes | bytearray | memoryview, pos: int = 0) -> tuple[Frame, int] | None:
    """Decode the frame starting at ``buf[pos]``: ``(frame, next_pos)``, or ``None`` when
    ``buf`` ends before the frame does.

    Raises:
        AssertionError: the opcode is not one RFC 6455 defines.
    """
    view = memoryview(buf)[pos:]
    if len(view) < 2:
        return None
    source = _Bytes(view)
    parser = _UncheckedFrame.parse(source.read_exact, mask=bool(view[1] & _MASK_BIT))
    try:
        next(parser)
    except StopIteration as done:
        return _frame(done.value, view), pos + source.pos
    except ProtocolError as error:
        raise AssertionError(f"unparsable frame header {bytes(view[:2]).hex()}: {error}") from error
    return None
