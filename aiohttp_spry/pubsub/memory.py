"""The in-memory broker, Spry's default: one process, no service, no configuration."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .broker import Broker, Deliver, Listener
from .history import HistoryRead, MemoryHistory
from .presence import MemoryPresence, PresenceChange, PresenceEvent

if TYPE_CHECKING:
    from .envelope import Stored
    from .history import HistoryPolicy, HistoryRules
    from .positions import Position


class MemoryBroker(Broker):
    """Publish/subscribe within one process (one application), and no further.

    Every subscriber lives in this process, where :class:`Fanout` already
    delivers each message, so there is nothing to carry. Topics with history
    keep a ring buffer each here (:class:`~.history.MemoryHistory`), and
    presence is a dict (:class:`~.presence.MemoryPresence`); both live as long
    as the process, so a restart starts new epochs. Run several processes
    (gunicorn workers, hosts) with :class:`~aiohttp_spry.pubsub.redis.RedisBroker`
    instead; with this broker each process is its own world.
    """

    __slots__ = ("_history", "_listener", "_presence", "_started")

    supports_history = True

    def __init__(self) -> None:
        self._started = False
        self._listener: Listener | None = None
        self._history = MemoryHistory()
        self._presence = MemoryPresence()

    async def start(self, deliver: Deliver) -> None:
        if self._started:
            raise RuntimeError("this MemoryBroker was already started; use one per application")
        self._started = True

    async def close(self) -> None:
        self._started = False

    async def subscribe(self, topic: str) -> None:
        return None

    def unsubscribe(self, topic: str) -> None:
        return None

    def publish(self, topic: str, payload: bytes, binary: bool) -> None:
        return None

    # -- history and presence ----------------------------------------------------------

    def attach(self, listener: Listener, rules: HistoryRules) -> None:
        self._listener = listener

    def publish_positioned(
        self, topic: str, message: Stored, msgid: str, policy: HistoryPolicy, *, ack: bool
    ) -> Position:
        position = self._history.append(topic, message, msgid, policy)
        if self._listener is not None:
            self._listener.deliver_positioned(topic, position, message.kind, message.payload, msgid)
        return position

    async def read_history(
        self, topic: str, since: Position | None, policy: HistoryPolicy
    ) -> HistoryRead:
        return self._history.read(topic, since, policy)

    async def presence_join(self, topic: str, id: str, info: Mapping[str, Any]) -> None:
        if self._presence.join(topic, id, info) and self._listener is not None:
            self._listener.presence_changed(PresenceEvent(PresenceChange.JOIN, topic, id, info))

    async def presence_leave(self, topic: str, id: str) -> None:
        info = self._presence.leave(topic, id)
        if info is not None and self._listener is not None:
            self._listener.presence_changed(PresenceEvent(PresenceChange.LEAVE, topic, id, info))

    async def presence(self, topic: str) -> dict[str, Mapping[str, Any]]:
        return self._presence.members(topic)

    async def presence_count(self, topic: str) -> int:
        return self._presence.count(topic)

    async def watch_presence(self, topic: str) -> None:
        return None

    def unwatch_presence(self, topic: str) -> None:
        return None

    def __repr__(self) -> str:
        return "MemoryBroker()"
