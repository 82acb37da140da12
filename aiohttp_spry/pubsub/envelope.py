"""The per-topic envelope: a message of a topic with history, and its frame with its position.

A message published to a topic that keeps history is stored as it was
published (its :class:`Kind` and encoded bytes), and the broker gives it a
position. Each process then builds the frame its subscribers get once, from
the stored bytes and the position, without decoding the JSON:

- a ``dict`` (a JSON object) gets two more keys, ``"epoch"`` and ``"offset"``:
  ``{"text": "hi"}`` → ``{"text": "hi","epoch":"k3x9","offset":42}``;
- anything else is wrapped: ``"hi"`` → ``{"data":"hi","epoch":"k3x9","offset":42}``
  (a ``str`` becomes a JSON string; another JSON value is inserted as is).

Binary data cannot carry a position in a JSON text frame, so a topic with
history refuses ``bytes`` (``TypeError``).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from typing import Any

import attrs

from .positions import Position

__all__ = ["Kind", "Stored", "envelope", "store"]


class Kind(enum.Enum):
    """How a stored message was published (its one-byte tag on the wire and in Redis)."""

    OBJECT = b"o"  # a JSON object: the position is added to it
    VALUE = b"v"  # another JSON value: wrapped as "data"
    TEXT = b"t"  # a str: wrapped as a JSON string


#: The tag byte → Kind, for messages read back from a broker.
KINDS: dict[bytes, Kind] = {kind.value: kind for kind in Kind}


@attrs.frozen(slots=True)
class Stored:
    """A message of a topic with history, as published (before it has a position)."""

    kind: Kind
    payload: bytes


def store(topic: str, data: Any) -> Stored:
    """What ``publish(topic, data)`` stores for a topic with history.

    >>> store("room:1", {"text": "hi"})
    Stored(kind=<Kind.OBJECT: b'o'>, payload=b'{"text": "hi"}')

    Raises:
        TypeError: ``data`` is bytes (a frame with a position is JSON text), or
            not JSON-serializable.
    """
    if type(data) is str:
        return Stored(Kind.TEXT, data.encode())
    if isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(
            f"topic {topic!r} keeps history: its messages carry their position in a JSON "
            "text frame, so publish a str, a dict or another JSON value, not bytes"
        )
    encoded = json.dumps(data).encode()
    return Stored(Kind.OBJECT if isinstance(data, Mapping) else Kind.VALUE, encoded)


def envelope(kind: Kind, payload: bytes, position: Position) -> bytes:
    """The text payload subscribers get: the stored message with its position.

    >>> envelope(Kind.OBJECT, b'{"a": 1}', Position("e", 7))
    b'{"a": 1,"epoch":"e","offset":7}'
    >>> envelope(Kind.OBJECT, b'{}', Position("e", 7))
    b'{"epoch":"e","offset":7}'
    >>> envelope(Kind.TEXT, b'hi "you"', Position("e", 7))
    b'{"data":"hi \\\\"you\\\\"","epoch":"e","offset":7}'
    """
    # The epoch is [A-Za-z0-9_-] (Position checks it): no JSON escaping needed.
    tail = b'"epoch":"%s","offset":%d}' % (position.epoch.encode(), position.offset)
    if kind is Kind.OBJECT:
        body = payload[:-1].rstrip()
        return body + (b"," if body != b"{" else b"") + tail
    if kind is Kind.TEXT:
        payload = json.dumps(payload.decode()).encode()
    return b'{"data":' + payload + b"," + tail
