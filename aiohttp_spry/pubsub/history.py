"""Opt-in history for topics: which topics keep it, and the memory broker's ring buffers.

``spry.history("room:", size=200, ttl=600)`` makes every topic starting with
``room:`` keep its last 200 messages for 600 s after its latest one. Each
message of such a topic gets a :class:`~.positions.Position` from the broker,
and a session that comes back with ``await ws.subscribe(topic, since=position)``
gets what it missed (:mod:`.recovery`). Topics that match no rule keep no
history and cost what they always did: one attribute check per publish.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from typing import Any, Final

import attrs

from .envelope import Kind, Stored
from .positions import Position

__all__ = ["Entry", "HistoryPolicy", "HistoryRead", "HistoryRules", "MemoryHistory", "new_epoch"]

#: The most distinct topics whose rule lookup is remembered (then it starts over).
_RULE_CACHE: Final = 10_000
_DEFAULT_META_TTL: Final = 86_400.0


def new_epoch() -> str:
    """A fresh epoch: 8 random URL-safe characters (48 bits)."""
    return secrets.token_urlsafe(6)


def _positive_int(instance: object, attribute: attrs.Attribute[int], value: object) -> None:
    if type(value) is not int or value < 1:
        raise ValueError(f"history {attribute.name} must be an int >= 1, got {value!r}")


def _positive_number(instance: object, attribute: attrs.Attribute[float], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"history {attribute.name} must be a number of seconds > 0, got {value!r}")


def _check_prefix(instance: object, attribute: object, value: Any) -> None:
    if not isinstance(value, str):
        raise TypeError(f"a history rule's prefix is a str such as 'room:', got {value!r}")


@attrs.frozen(slots=True)
class HistoryPolicy:
    """One rule: topics starting with ``prefix`` keep ``size`` messages for ``ttl`` seconds.

    Attributes:
        prefix: topics starting with it keep history (``""``: every topic).
        size: how many of a topic's latest messages are kept (Redis trims
            approximately, so it may keep a few more; never fewer).
        ttl: seconds the history is kept after the topic's latest message.
        meta_ttl: seconds the topic's epoch and offset are kept after its latest
            message (at least ``ttl``): a session that comes back within it,
            having missed nothing, is recovered; after it a new epoch starts.

    Raises:
        ValueError: ``size`` not an int >= 1, ``ttl`` or ``meta_ttl`` not > 0,
            or ``meta_ttl`` < ``ttl``.
    """

    prefix: str = attrs.field(validator=_check_prefix)
    size: int = attrs.field(validator=_positive_int)
    ttl: float = attrs.field(validator=_positive_number)
    meta_ttl: float = attrs.field(default=_DEFAULT_META_TTL, validator=_positive_number)

    def __attrs_post_init__(self) -> None:
        if self.meta_ttl < self.ttl:
            raise ValueError(
                f"history meta_ttl ({self.meta_ttl!r}) must be >= ttl ({self.ttl!r}): the "
                "position must outlive the messages it numbers"
            )


class HistoryRules:
    """The history rules of one application; the longest matching prefix wins."""

    __slots__ = ("_cache", "_rules")

    def __init__(self, rules: Iterable[HistoryPolicy] = ()) -> None:
        self._rules = sorted(rules, key=lambda rule: len(rule.prefix), reverse=True)
        self._cache: dict[str, HistoryPolicy | None] = {}

    def add(self, rule: HistoryPolicy) -> None:
        """Add a rule (before the application starts).

        Raises:
            ValueError: a rule for the same prefix exists.
        """
        if any(existing.prefix == rule.prefix for existing in self._rules):
            raise ValueError(f"a history rule for prefix {rule.prefix!r} is already declared")
        self._rules = sorted([*self._rules, rule], key=lambda r: len(r.prefix), reverse=True)
        self._cache.clear()

    def __bool__(self) -> bool:
        return bool(self._rules)

    @property
    def rules(self) -> tuple[HistoryPolicy, ...]:
        return tuple(self._rules)

    def policy(self, topic: str) -> HistoryPolicy | None:
        """The rule ``topic`` falls under, or ``None`` (no history)."""
        try:
            return self._cache[topic]
        except KeyError:
            pass
        found = next((rule for rule in self._rules if topic.startswith(rule.prefix)), None)
        if len(self._cache) >= _RULE_CACHE:
            self._cache.clear()
        self._cache[topic] = found
        return found


@attrs.frozen(slots=True)
class Entry:
    """A stored message with its offset (its epoch is the read's) and its message id."""

    offset: int
    kind: Kind
    payload: bytes
    msgid: str


@attrs.frozen(slots=True)
class HistoryRead:
    """A topic's position and the stored messages after a given one, read at one moment.

    Attributes:
        position: the topic's latest position (offset 0: no message yet).
        entries: the stored messages after the offset asked for, in order
            (empty when the epoch asked for is not this one).
    """

    position: Position
    entries: tuple[Entry, ...]

    def recovers(self, since: Position) -> bool:
        """Whether ``entries`` are exactly every message after ``since``: no gap."""
        position = self.position
        if since.epoch != position.epoch or since.offset > position.offset:
            return False
        missed = position.offset - since.offset
        entries = self.entries
        return missed == 0 or (
            len(entries) == missed
            and entries[0].offset == since.offset + 1
            and entries[-1].offset == position.offset
        )


class _Topic:
    __slots__ = ("epoch", "last_used", "offset", "ring")

    def __init__(self, size: int, now: float) -> None:
        self.epoch = new_epoch()
        self.offset = 0
        self.ring: deque[Entry] = deque(maxlen=size)
        self.last_used = now


class MemoryHistory:
    """The memory broker's history: a ring buffer, an epoch and an offset per topic.

    A topic's ring is emptied ``ttl`` seconds after its latest message; its
    epoch and offset are forgotten ``meta_ttl`` seconds after (the next
    message starts a new epoch). A new process always starts new epochs.
    """

    __slots__ = ("_clock", "_topics")

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self._topics: OrderedDict[str, _Topic] = OrderedDict()
        self._clock: Callable[[], float] = clock or time.monotonic

    def __len__(self) -> int:
        return len(self._topics)

    def _topic(self, name: str, policy: HistoryPolicy) -> _Topic:
        now = self._clock()
        topic = self._topics.get(name)
        if topic is not None:
            idle = now - topic.last_used
            if idle > policy.meta_ttl:
                topic = None
            elif idle > policy.ttl:
                topic.ring.clear()
        if topic is None:
            self._forget_idle(now, policy.meta_ttl)
            topic = self._topics[name] = _Topic(policy.size, now)
        return topic

    def _forget_idle(self, now: float, meta_ttl: float) -> None:
        # The least recently used come first: stop at the first one still in use.
        topics = self._topics
        while topics:
            name, oldest = next(iter(topics.items()))
            if now - oldest.last_used <= meta_ttl:
                break
            del topics[name]

    def append(self, name: str, message: Stored, msgid: str, policy: HistoryPolicy) -> Position:
        """Give ``message`` the topic's next offset and keep it; return its position."""
        topic = self._topic(name, policy)
        topic.offset += 1
        topic.ring.append(Entry(topic.offset, message.kind, message.payload, msgid))
        topic.last_used = self._clock()
        self._topics.move_to_end(name)
        return Position(topic.epoch, topic.offset)

    def read(self, name: str, since: Position | None, policy: HistoryPolicy) -> HistoryRead:
        """The topic's position, and what it keeps after ``since`` (same epoch only)."""
        topic = self._topic(name, policy)
        position = Position(topic.epoch, topic.offset)
        if since is None or since.epoch != topic.epoch or since.offset >= topic.offset:
            return HistoryRead(position, ())
        ring = topic.ring
        if not ring:
            return HistoryRead(position, ())
        start = since.offset + 1 - ring[0].offset  # index of the first one missed
        entries = tuple(ring)[max(start, 0) :]
        return HistoryRead(position, entries)
