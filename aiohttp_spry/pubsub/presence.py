"""Presence: who is in a topic, in every process, and join/leave events for those who ask.

A session is present in a topic with a small info dict::

    await ws.subscribe("room:lobby", presence={"name": "ann"}, presence_events=room_event)
    members = await spry.presence(app, "room:lobby")   # {session id: info}, all processes
    count = await spry.presence_count(app, "room:lobby")

It leaves when it unsubscribes or ends (seen everywhere within a second), or,
when its process dies without a goodbye, when its entry expires: the broker
refreshes its process's entries every ``refresh`` seconds and an entry not
refreshed for ``ttl`` seconds is removed by the next process that looks. Join
and leave events go only to sessions that asked for them (``presence_events=``,
a function building the event's frame from a :class:`PresenceEvent`), so a
room of many silent members costs no frames per join.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

import attrs

from ..log import pubsub_logger as logger

if TYPE_CHECKING:
    from .broker import Broker
    from .fanout import Fanout, Subscription

__all__ = [
    "MAX_INFO_BYTES",
    "MemoryPresence",
    "PresenceChange",
    "PresenceEvent",
    "PresenceFormat",
    "PresenceHub",
    "check_info",
    "default_presence_format",
]

#: The most bytes a presence info dict may take as JSON.
MAX_INFO_BYTES: Final = 4096


class PresenceChange(enum.Enum):
    """What happened to a topic's presence."""

    JOIN = "join"
    LEAVE = "leave"


@attrs.frozen(slots=True)
class PresenceEvent:
    """A session joined or left a topic's presence (in any process).

    Attributes:
        change: :attr:`PresenceChange.JOIN` or :attr:`PresenceChange.LEAVE`.
        topic: the topic.
        id: the session's ``ws.id``.
        info: the info dict it joined with.
    """

    change: PresenceChange
    topic: str
    id: str
    info: Mapping[str, Any]


#: Builds the frame data (JSON-serializable) that watchers of a topic get for an event.
#: One function gives one frame per event for all its watchers.
PresenceFormat = Callable[[PresenceEvent], Any]


def default_presence_format(event: PresenceEvent) -> dict[str, Any]:
    """``{"type": "join"|"leave", "topic": T, "member": {"id": ID, **info}}``."""
    return {
        "type": event.change.value,
        "topic": event.topic,
        "member": {"id": event.id, **event.info},
    }


def check_info(info: object) -> bytes:
    """Return ``info`` as compact JSON.

    Raises:
        TypeError: ``info`` is not a ``dict`` with ``str`` keys, or not JSON-serializable.
        ValueError: over :data:`MAX_INFO_BYTES` bytes as JSON.
    """
    if not isinstance(info, Mapping) or not all(isinstance(key, str) for key in info):
        raise TypeError(
            f"presence= takes a dict with str keys such as {{'name': 'ann'}}, got {info!r}"
        )
    encoded = json.dumps(dict(info), separators=(",", ":")).encode()
    if len(encoded) > MAX_INFO_BYTES:
        raise ValueError(f"presence info is {len(encoded)} bytes as JSON; at most {MAX_INFO_BYTES}")
    return encoded


class MemoryPresence:
    """The memory broker's presence: topic → session id → info, in one dict."""

    __slots__ = ("_topics",)

    def __init__(self) -> None:
        self._topics: dict[str, dict[str, Mapping[str, Any]]] = {}

    def join(self, topic: str, id: str, info: Mapping[str, Any]) -> bool:
        """Add or update ``id``; whether it is new to the topic."""
        members = self._topics.setdefault(topic, {})
        new = id not in members
        members[id] = info
        return new

    def leave(self, topic: str, id: str) -> Mapping[str, Any] | None:
        """Remove ``id``; its info, or ``None`` if it was not present."""
        members = self._topics.get(topic)
        if members is None:
            return None
        info = members.pop(id, None)
        if not members:
            del self._topics[topic]
        return info

    def members(self, topic: str) -> dict[str, Mapping[str, Any]]:
        return dict(self._topics.get(topic, {}))

    def count(self, topic: str) -> int:
        return len(self._topics.get(topic, ()))


class PresenceHub:
    """The presence side of one application's fan-out: local members and watchers.

    Owned by :class:`~.fanout.Fanout`, created when a session first uses presence.
    """

    __slots__ = ("_broker", "_fanout", "_local", "_watchers")

    def __init__(self, fanout: Fanout, broker: Broker) -> None:
        self._fanout = fanout
        self._broker = broker
        # topic → ws.id → the local subscription present in it
        self._local: dict[str, dict[str, Subscription]] = {}
        # topic → format → the local subscriptions that asked for its events
        self._watchers: dict[str, dict[PresenceFormat, set[Subscription]]] = {}

    @staticmethod
    def check(info: object) -> None:
        check_info(info)

    def present_here(self) -> int:
        """How many (session, topic) presences this process holds."""
        return sum(len(members) for members in self._local.values())

    def watchers(self, topic: str) -> int:
        return sum(len(group) for group in self._watchers.get(topic, {}).values())

    async def join(self, subscription: Subscription, topic: str, info: Mapping[str, Any]) -> None:
        id = subscription.ws.id
        self._local.setdefault(topic, {})[id] = subscription
        await self._broker.presence_join(topic, id, dict(info))

    async def watch(self, subscription: Subscription, topic: str, format: PresenceFormat) -> None:
        groups = self._watchers.setdefault(topic, {})
        first = not groups
        groups.setdefault(format, set()).add(subscription)
        if first:
            await self._broker.watch_presence(topic)

    def leave(self, subscription: Subscription, topic: str) -> None:
        local = self._local.get(topic)
        if local is not None:
            id = subscription.ws.id
            if local.get(id) is subscription:
                del local[id]
                if not local:
                    del self._local[topic]
                self._fanout.spawn(self._broker.presence_leave(topic, id))
        groups = self._watchers.get(topic)
        if groups is not None:
            for format in [f for f, group in groups.items() if subscription in group]:
                group = groups[format]
                group.discard(subscription)
                if not group:
                    del groups[format]
            if not groups:
                del self._watchers[topic]
                self._broker.unwatch_presence(topic)

    def changed(self, event: PresenceEvent) -> None:
        """An event from the broker: one frame per format, to each watcher but its subject."""
        groups = self._watchers.get(event.topic)
        if not groups:
            return
        fanout = self._fanout
        for format, group in list(groups.items()):
            try:
                text = json.dumps(format(event)).encode()
            except Exception:
                logger.exception("presence_events format %r failed for %s", format, event)
                continue
            frame = fanout.frame(text)
            for subscription in list(group):
                if subscription.ws.id != event.id:
                    fanout.send_or_hold(subscription, event.topic, frame, text)
