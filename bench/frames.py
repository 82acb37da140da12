"""WebSocket wire format, by hand (RFC 6455): what the load client sends and expects.

Everything the client writes is built once, before the clock starts: the
handshake request, masked data frames (and batches of them), the close frame.
What the servers send back is known byte for byte too (an unmasked frame with
the same opcode and payload), so the client can count echoes by bytes and
decode a sample of them with :func:`parse_frame` to prove they are right.
"""

from __future__ import annotations

import base64
import hashlib

OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# A fixed key is fine: the servers only check its shape, and it makes the
# expected Sec-WebSocket-Accept a constant.
WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
MASK = b"\x37\xfa\x21\x3d"

ECHO_PATH = "/ws"
HELLO_PATH = "/hello"
HELLO_BODY = "Hello, World!"


def accept_for(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` a server must answer ``key`` with."""
    # SHA-1 because RFC 6455 §4.2.2 says so; nothing here is about security.
    digest = hashlib.sha1((key + WS_GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


WS_ACCEPT = accept_for(WS_KEY)


def handshake_request(port: int, path: str = ECHO_PATH) -> bytes:
    """A minimal RFC 6455 opening handshake, offering no subprotocol and no extension."""
    return (
        f"GET {path} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {WS_KEY}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "\r\n"
    ).encode("ascii")


def check_handshake_response(head: bytes) -> str | None:
    """``None`` when ``head`` (up to the blank line) is a valid 101 for :data:`WS_KEY`,
    else what is wrong with it."""
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/1.1 101"):
        return f"status line {lines[0]!r}"
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    if headers.get("sec-websocket-accept") != WS_ACCEPT:
        return f"Sec-WebSocket-Accept {headers.get('sec-websocket-accept')!r}"
    if headers.get("upgrade", "").lower() != "websocket":
        return f"Upgrade {headers.get('upgrade')!r}"
    if "sec-websocket-extensions" in headers:
        return f"unexpected extension {headers['sec-websocket-extensions']!r}"
    return None


def _header(opcode: int, length: int, masked: bool) -> bytes:
    first = 0x80 | opcode  # FIN, no RSV bits
    mask_bit = 0x80 if masked else 0
    if length < 126:
        return bytes((first, mask_bit | length))
    if length < 1 << 16:
        return bytes((first, mask_bit | 126)) + length.to_bytes(2, "big")
    return bytes((first, mask_bit | 127)) + length.to_bytes(8, "big")


def apply_mask(data: bytes, mask: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``mask`` (done once per payload, not per message)."""
    repeated = (mask * (len(data) // 4 + 1))[: len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        len(data), "big"
    )


def client_frame(opcode: int, payload: bytes, mask: bytes = MASK) -> bytes:
    """A complete, masked client-to-server frame."""
    return _header(opcode, len(payload), masked=True) + mask + apply_mask(payload, mask)


def server_frame(opcode: int, payload: bytes) -> bytes:
    """The unmasked server-to-client frame a correct echo of ``payload`` is, byte for byte."""
    return _header(opcode, len(payload), masked=False) + payload


def close_payload(code: int = 1000, reason: bytes = b"") -> bytes:
    return code.to_bytes(2, "big") + reason


def parse_frame(buf: bytes | memoryview, pos: int = 0) -> tuple[int, int, bool, bytes, int] | None:
    """Decode the frame starting at ``buf[pos]``.

    Returns ``(first_byte, opcode, masked, payload, next_pos)`` with the payload
    unmasked, or ``None`` when ``buf`` ends before the frame does.
    """
    end = len(buf)
    if end - pos < 2:
        return None
    first = buf[pos]
    second = buf[pos + 1]
    masked = bool(second & 0x80)
    length = second & 0x7F
    pos += 2
    if length == 126:
        if end - pos < 2:
            return None
        length = int.from_bytes(buf[pos : pos + 2], "big")
        pos += 2
    elif length == 127:
        if end - pos < 8:
            return None
        length = int.from_bytes(buf[pos : pos + 8], "big")
        pos += 8
    mask = b""
    if masked:
        if end - pos < 4:
            return None
        mask = bytes(buf[pos : pos + 4])
        pos += 4
    if end - pos < length:
        return None
    payload = bytes(buf[pos : pos + length])
    if masked:
        payload = apply_mask(payload, mask)
    return first, first & 0x0F, masked, payload, pos + length


class Payload:
    """One echo workload: the message, its frames, and the batches the client writes."""

    def __init__(self, name: str, opcode: int, data: bytes, window: int) -> None:
        if opcode == OP_TEXT:
            data.decode("utf-8")  # must be valid text
        self.name = name
        self.opcode = opcode
        self.data = data
        self.request = client_frame(opcode, data)
        self.response = server_frame(opcode, data)
        self.response_size = len(self.response)
        # batches[k] is k request frames back to back: one write() of any size
        # up to the window without encoding anything while the clock runs.
        self.batches = [self.request * k for k in range(window + 1)]

    def check(self, first: int, opcode: int, masked: bool, payload: bytes) -> str | None:
        """``None`` if a decoded frame is the exact echo, else what differs."""
        if first != 0x80 | self.opcode:
            return f"first byte {first:#04x}, expected {0x80 | self.opcode:#04x}"
        if masked:
            return "server frame is masked"
        if payload != self.data:
            return f"payload of {len(payload)} bytes differs from the {len(self.data)} sent"
        return None


def text_payload(size: int) -> bytes:
    """``size`` bytes of printable ASCII (valid UTF-8), deterministic."""
    alphabet = b"spry-bench-0123456789abcdefghijklmnopqrstuvwxyz"
    return (alphabet * (size // len(alphabet) + 1))[:size]


def binary_payload(size: int) -> bytes:
    """``size`` bytes covering every byte value, deterministic."""
    return (bytes(range(256)) * (size // 256 + 1))[:size]
