"""Positions in a topic's history: ``Position(epoch, offset)`` and what a subscribe recovered.

A topic that keeps history (:mod:`.history`) numbers its messages: the broker
gives each one the next ``offset`` (1, 2, 3 …, one order for every process),
within one ``epoch``, a name for one life of that topic's history. When the
history is lost (the memory broker's process restarted, Redis restarted
without persistence, the keys expired), a new epoch starts and offsets start
again from 1, so a position from the old life can never be mistaken for one
of the new.
"""

from __future__ import annotations

import re
from typing import Any, Final

import attrs

__all__ = ["Position", "SubscribeResult", "parse_position"]

_EPOCH: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _check_epoch(instance: object, attribute: object, value: Any) -> None:
    if not isinstance(value, str) or not _EPOCH.fullmatch(value):
        raise ValueError(f"an epoch is 1 to 64 letters, digits, '_' or '-', got {value!r}")


def _check_offset(instance: object, attribute: object, value: Any) -> None:
    if type(value) is not int or value < 0:
        raise ValueError(f"an offset is an int >= 0, got {value!r}")


@attrs.frozen(slots=True)
class Position:
    """Where a message sits in a topic's history: ``str(position)`` is ``"EPOCH:OFFSET"``.

    ``offset`` 0 means "before the first message of this epoch".

    >>> Position("k3x9", 42)
    Position(epoch='k3x9', offset=42)
    >>> str(Position("k3x9", 42))
    'k3x9:42'

    Raises:
        ValueError: an epoch that is not 1 to 64 of ``[A-Za-z0-9_-]``, or an
            offset that is not an ``int`` >= 0.
    """

    epoch: str = attrs.field(validator=_check_epoch)
    offset: int = attrs.field(validator=_check_offset)

    def __str__(self) -> str:
        return f"{self.epoch}:{self.offset}"

    def as_dict(self) -> dict[str, str | int]:
        """``{"epoch": …, "offset": …}``, as message frames carry it."""
        return {"epoch": self.epoch, "offset": self.offset}


def parse_position(text: str) -> Position:
    """``"EPOCH:OFFSET"`` → :class:`Position` (what a client sends back as ``since=``).

    >>> parse_position("k3x9:42")
    Position(epoch='k3x9', offset=42)

    Raises:
        ValueError: not of the form ``EPOCH:OFFSET`` with a non-negative
            integer offset; the message names the expected form.
    """
    epoch, colon, offset = text.rpartition(":")
    if not colon or not epoch or not offset.isdigit() or not offset.isascii():
        raise ValueError(
            f"a position is EPOCH:OFFSET (an epoch, a colon, an integer offset >= 0), got {text!r}"
        )
    try:
        return Position(epoch, int(offset))
    except ValueError as error:
        raise ValueError(f"a position is EPOCH:OFFSET; {error}") from None


@attrs.frozen(slots=True)
class SubscribeResult:
    """What ``await ws.subscribe(topic, since=…)`` did.

    Attributes:
        recovered: ``True``: every message after ``since`` was delivered,
            in order, once, before any live one. ``False``: ``since`` could
            not be served (another epoch, older than the history, or the
            history expired); live messages follow from ``position`` on.
            ``None``: no ``since`` was given (or the topic keeps no history).
        position: the topic's position when the session went live: the
            position of the last message it was given (or of the topic's
            latest message); ``None`` for a topic without history.
        replayed: how many messages were replayed.
    """

    recovered: bool | None
    position: Position | None
    replayed: int = 0
