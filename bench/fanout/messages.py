"""The fan-out messages, shared by the servers and the client.

Every message is 64 ASCII bytes built from a burst (or stream) number and a sequence
number, so the client can check that each subscriber got every one, in order, once.
raw aiohttp and aiohttp_spry send it as one text frame; python-socketio as the
Engine.IO/Socket.IO packet ``42["m","<64 bytes>"]`` in one text frame.
"""

from __future__ import annotations

import json

MESSAGE_SIZE = 64
TOPIC, ROOM, EVENT = "t", "r", "m"  # the aiohttp_spry topic, the Socket.IO room and event
RAW_PATH, SPRY_PATH, REDIS_PATH = "/raw/sub", "/spry/sub", "/sub"
SIO_PATH = "/socket.io/?EIO=4&transport=websocket"
_FILL = "spry-fanout-0123456789abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJKLMNOPQRSTUVWXYZ"
LATENCY_FILL = _FILL[: MESSAGE_SIZE - 34].encode()


def burst_messages(burst: int, count: int) -> list[str]:
    """The ``count`` messages of burst ``burst``."""
    return [f"b{burst:06d}.{seq:07d}.{_FILL}"[:MESSAGE_SIZE] for seq in range(count)]


def latency_message(run: int, seq: int, published_ns: int) -> str:
    """A message stamped with ``time.time_ns()``: CLOCK_REALTIME, the clock of the kernel's
    receive timestamps (``SO_TIMESTAMPNS``) the client compares it with."""
    return f"L{run:03d}.{seq:07d}.{published_ns:020d}.{_FILL}"[:MESSAGE_SIZE]


def parse_latency_message(payload: bytes) -> tuple[int, int, int]:
    """``(run, seq, published_ns)``; ValueError when ``payload`` is not an intact one."""
    if len(payload) != MESSAGE_SIZE or payload[:1] != b"L" or payload[34:] != LATENCY_FILL:
        raise ValueError(f"not a latency message: {payload!r}")
    return int(payload[1:4]), int(payload[5:12]), int(payload[13:33])


def sio_packet(message: str) -> bytes:
    """The Engine.IO/Socket.IO packet python-socketio sends for ``emit(EVENT, message)``."""
    return b"42" + json.dumps([EVENT, message], separators=(",", ":")).encode()
