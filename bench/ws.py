"""The WebSocket side of both load clients: blocking handshakes and closes on raw sockets.

Frames come from ``tests.support.wire`` and are built before any clock starts; one
fixed ``Sec-WebSocket-Key`` (``SAMPLE_KEY``) makes the expected accept a constant.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable

import attrs

from bench.system import HOST
from tests.support.wire import (
    SAMPLE_KEY,
    CloseCode,
    Opcode,
    accept_for,
    client_frame,
    close_payload,
    handshake_request,
    parse_frame,
    server_frame,
)

__all__ = ["Opcode", "client_frame", "parse_frame", "server_frame"]

ACCEPT = accept_for(SAMPLE_KEY)
CLOSE_REQUEST = client_frame(Opcode.CLOSE, close_payload(CloseCode.NORMAL_CLOSURE))
CLOSE_REPLY = server_frame(Opcode.CLOSE, close_payload(CloseCode.NORMAL_CLOSURE))
READ_SIZE = 1 << 18
MAX_ERRORS_KEPT = 20


@attrs.define
class Totals:
    """Counters of one run against one server; the first errors, and how many there were."""

    done: int = 0
    verified: int = 0
    errors: list[str] = attrs.Factory(list)
    error_count: int = 0

    def error(self, what: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(what)


def receive(sock: socket.socket, on_error: Callable[[str], object]) -> bytes | None:
    """What ``sock`` holds, ``None`` when nothing yet; ``b""`` when the peer closed or the
    read failed (``on_error`` is told why)."""
    try:
        return sock.recv(READ_SIZE)
    except BlockingIOError:
        return None
    except OSError as error:
        on_error(f"recv: {error}")
        return b""


def request(port: int, path: str) -> bytes:
    return handshake_request(f"{HOST}:{port}", path)


def check_101(head: bytes) -> str | None:
    """``None`` when ``head`` (up to the blank line) is a right 101 for ``SAMPLE_KEY``."""
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/1.1 101"):
        return f"status line {lines[0]!r}"
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("sec-websocket-accept") != ACCEPT:
        return f"Sec-WebSocket-Accept {headers.get('sec-websocket-accept')!r}"
    if headers.get("upgrade", "").lower() != "websocket":
        return f"Upgrade {headers.get('upgrade')!r}"
    if "sec-websocket-extensions" in headers:
        return f"unexpected extension {headers['sec-websocket-extensions']!r}"
    return None


def open_ws(port: int, path: str, timeout: float = 10.0) -> tuple[socket.socket, bytes]:
    """Connect and upgrade (blocking); the socket and the bytes that came after the 101."""
    sock = socket.create_connection((HOST, port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(request(port, path))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(8192)
            if not chunk or len(head) > 65536:
                raise ConnectionError(f"handshake cut short after {head[:200]!r}")
            head += chunk
        end = head.index(b"\r\n\r\n")
        problem = check_101(head[:end])
        if problem is not None:
            raise ConnectionError(f"handshake: {problem}")
    except BaseException:
        sock.close()
        raise
    return sock, head[end + 4 :]


def open_quiet(port: int, path: str) -> socket.socket:
    """:func:`open_ws` where the server must say nothing first; non-blocking."""
    sock, rest = open_ws(port, path)
    if rest:
        sock.close()
        raise ConnectionError(f"unexpected bytes after the 101: {rest[:40]!r}")
    sock.setblocking(False)
    return sock


def read_frame(sock: socket.socket, buf: bytes) -> tuple[bytes, bytes]:
    """Blocking: the next unmasked text frame's payload, and the bytes after it."""
    while True:
        parsed = parse_frame(buf)
        if parsed is not None:
            frame, end = parsed
            if frame.opcode != Opcode.TEXT or not frame.fin or frame.masked:
                raise ConnectionError(f"expected an unmasked text frame, got {frame}")
            return frame.payload, buf[end:]
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed while a frame was expected")
        buf += chunk


def close_all(socks: list[socket.socket], totals: Totals, timeout: float = 30.0) -> None:
    """A 1000 close frame on each socket; each must answer with a 1000 close frame and a FIN."""
    poller = select.epoll()
    replies: dict[int, tuple[socket.socket, bytearray]] = {}
    try:
        for sock in socks:
            sock.setblocking(True)
            sock.settimeout(timeout)
            sock.sendall(CLOSE_REQUEST)
            sock.setblocking(False)
            replies[sock.fileno()] = (sock, bytearray())
            poller.register(sock.fileno(), select.EPOLLIN)
        deadline = time.monotonic() + timeout
        while replies and time.monotonic() < deadline:
            for fd, _ in poller.poll(0.1):
                sock, reply = replies[fd]
                if (data := receive(sock, totals.error)) is None:
                    continue
                reply += data
                if not data:  # the server hung up: its last bytes must be a 1000 close frame
                    if not reply.endswith(CLOSE_REPLY):
                        totals.error(f"close reply ends {bytes(reply[-8:])!r}, not {CLOSE_REPLY!r}")
                    poller.unregister(fd)
                    del replies[fd]
        if replies:
            totals.error(f"{len(replies)} server(s) did not close within {timeout} s of a close")
    finally:
        poller.close()
        for sock in socks:
            sock.close()
