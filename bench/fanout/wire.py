"""What goes over the wire in the fan-out benchmarks, shared by the servers and the client.

Every published message is 64 bytes of ASCII, built from a burst (or run)
number and a sequence number so the client can check that each subscriber got
every message, in order, exactly once. Each server frames it its own way:

- raw aiohttp and aiohttp_spry: one unmasked text frame, ``81 40`` + the 64 bytes;
- python-socketio: an Engine.IO v4 message packet carrying a Socket.IO event,
  ``42["m","<64 bytes>"]``, in one text frame.

The client drives each server through a control WebSocket (``GET /control``, a
plain aiohttp route in every server process): one JSON text message per
command, one JSON text answer.
"""

from __future__ import annotations

import json
from typing import Any

from bench.frames import OP_TEXT, client_frame, server_frame

MESSAGE_SIZE = 64
TOPIC = "t"  # the aiohttp_spry topic
ROOM = "r"  # the Socket.IO room
EVENT = "m"  # the Socket.IO event name
CONTROL_PATH = "/control"
RAW_PATH = "/raw/sub"
SPRY_PATH = "/spry/sub"
SIO_PATH = "/socket.io/?EIO=4&transport=websocket"
REDIS_PATH = "/sub"
_FILL = "spry-fanout-0123456789abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _pad(head: str) -> str:
    return head + _FILL[: MESSAGE_SIZE - len(head)]


def burst_message(burst: int, seq: int) -> str:
    """The ``seq``-th message of burst ``burst``: exactly 64 ASCII characters."""
    return _pad(f"b{burst:06d}.{seq:07d}.")


def burst_messages(burst: int, count: int) -> list[str]:
    return [burst_message(burst, seq) for seq in range(count)]


def latency_message(run: int, seq: int, published_ns: int) -> str:
    """A timestamped message: ``published_ns`` is ``time.time_ns()`` in the publisher.

    CLOCK_REALTIME, not CLOCK_MONOTONIC (both are one clock for every process of a
    machine), because it is the clock of the kernel's receive timestamps
    (``SO_TIMESTAMPNS``) the client compares it with."""
    return _pad(f"L{run:03d}.{seq:07d}.{published_ns:020d}.")


def parse_latency_message(payload: bytes) -> tuple[int, int, int]:
    """``(run, seq, published_ns)`` of a :func:`latency_message` (raises ValueError if not one)."""
    if len(payload) != MESSAGE_SIZE or payload[:1] != b"L" or payload[33:34] != b".":
        raise ValueError(f"not a latency message: {payload!r}")
    return int(payload[1:4]), int(payload[5:12]), int(payload[13:33])


_LATENCY_FILL = _FILL[: MESSAGE_SIZE - 34].encode()


def latency_checks(payload: bytes) -> bool:
    """Whether the filler after the header is intact."""
    return payload[34:] == _LATENCY_FILL


def sio_event_payload(message: str) -> bytes:
    """The Engine.IO/Socket.IO packet python-socketio sends for ``emit(EVENT, message)``."""
    return b"42" + json.dumps([EVENT, message], separators=(",", ":")).encode()


def ws_frame(message: str) -> bytes:
    """The frame raw aiohttp and aiohttp_spry send for ``message``."""
    return server_frame(OP_TEXT, message.encode())


def sio_frame(message: str) -> bytes:
    return server_frame(OP_TEXT, sio_event_payload(message))


# Engine.IO v4 over WebSocket: the client's side of the conversation.
SIO_CONNECT = client_frame(OP_TEXT, b"40")  # Socket.IO CONNECT to the "/" namespace
SIO_PONG = client_frame(OP_TEXT, b"3")  # the answer to the server's ping, "2"
SIO_PING_FRAME = server_frame(OP_TEXT, b"2")


def command(op: str, **fields: Any) -> bytes:
    """A control command, as the masked client frame that carries it."""
    return client_frame(OP_TEXT, json.dumps({"op": op, **fields}).encode())
