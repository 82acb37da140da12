"""The broker interface: how published messages travel between processes.

Local delivery is always done in-process by :class:`~aiohttp_spry.pubsub.fanout.Fanout`
(one encoded frame written to every local subscriber), whatever the broker. A
broker carries each published message to the *other* processes and hands the
messages they publish to ``deliver``. That split is why local subscribers keep
receiving while a remote broker is unreachable.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .envelope import Kind, Stored
    from .history import HistoryPolicy, HistoryRead, HistoryRules
    from .positions import Position
    from .presence import PresenceEvent

#: Called by a broker for a message another process published:
#: ``deliver(topic, payload, binary)``; ``payload`` is the encoded message.
Deliver = Callable[[str, bytes, bool], None]


class Listener(Protocol):
    """What a broker that keeps history and presence calls back (the application's fan-out)."""

    def deliver_positioned(
        self, topic: str, position: Position, kind: Kind, payload: bytes, msgid: str
    ) -> None:
        """A message of a topic with history, with its position. Positions may arrive
        twice or with a gap (after a broken link): the listener orders them."""

    def resync(self, topic: str) -> None:
        """The broker (re)subscribed ``topic``: what passed while it was not
        subscribed must be read from the history."""

    def presence_changed(self, event: PresenceEvent) -> None:
        """A session joined or left a topic's presence, in any process."""


def _no_history(broker: Broker) -> NotImplementedError:
    return NotImplementedError(
        f"{type(broker).__name__} keeps no topic history or presence; use MemoryBroker or "
        "RedisBroker, or implement the history and presence methods of Broker"
    )


class Broker(abc.ABC):
    """Carries published messages to and from other processes.

    One broker serves one application. Spry calls :meth:`start` when the
    application starts and :meth:`close` at cleanup; :meth:`subscribe` when a
    topic gets its first local subscriber, :meth:`unsubscribe` when it loses
    its last; :meth:`publish` for every message published in this process.
    """

    @abc.abstractmethod
    async def start(self, deliver: Deliver) -> None:
        """Start carrying messages; call ``deliver`` for each one from elsewhere.

        Raises:
            RuntimeError: the broker was already started (one per application).
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop and free every connection. Messages not yet sent are dropped."""

    @abc.abstractmethod
    async def subscribe(self, topic: str) -> None:
        """Receive ``topic`` from other processes; return once they will arrive.

        Returns without waiting while the broker is unreachable: the
        subscription is restored when it is back.
        """

    @abc.abstractmethod
    def unsubscribe(self, topic: str) -> None:
        """Stop receiving ``topic`` (no local subscriber is left). Never blocks."""

    @abc.abstractmethod
    def publish(self, topic: str, payload: bytes, binary: bool) -> None:
        """Send a message to the other processes. Never blocks and never raises
        for an unreachable broker (see each broker for what happens then)."""

    @property
    def connected(self) -> bool:
        """Whether messages currently reach other processes."""
        return True

    @property
    def outages(self) -> int:
        """How many times the broker lost its connection since it started (metrics)."""
        return 0

    # -- history and presence (optional: the defaults refuse) ------------------------
    #
    # A broker that implements them sets ``supports_history`` and gets the
    # listener before start().

    supports_history = False

    def attach(self, listener: Listener, rules: HistoryRules) -> None:
        """Called before :meth:`start` when the application has history rules or presence."""
        return None

    def publish_positioned(
        self, topic: str, message: Stored, msgid: str, policy: HistoryPolicy, *, ack: bool
    ) -> Position | asyncio.Future[Position] | None:
        """Give ``message`` the topic's next position, store it and send it to every
        process subscribed to ``topic``, this one included, through
        :meth:`Listener.deliver_positioned`. Never blocks: returns the position, or (with
        ``ack``) a future of it, or ``None``. ``msgid`` is unique; a retried
        message is applied once."""
        raise _no_history(self)

    async def read_history(
        self, topic: str, since: Position | None, policy: HistoryPolicy
    ) -> HistoryRead:
        """The topic's latest position and its stored messages after ``since``, read at
        one moment (a new epoch is started for a topic that has none)."""
        raise _no_history(self)

    async def presence_join(self, topic: str, id: str, info: Mapping[str, Any]) -> None:
        """Make session ``id`` present in ``topic`` (kept fresh until it leaves)."""
        raise _no_history(self)

    async def presence_leave(self, topic: str, id: str) -> None:
        """Session ``id`` left ``topic``."""
        raise _no_history(self)

    async def presence(self, topic: str) -> dict[str, Mapping[str, Any]]:
        """Every session present in ``topic``, in every process: id → info."""
        raise _no_history(self)

    async def presence_count(self, topic: str) -> int:
        """How many sessions are present in ``topic``, in every process (cheap)."""
        raise _no_history(self)

    async def watch_presence(self, topic: str) -> None:
        """Deliver ``topic``'s presence events from every process to the listener."""
        raise _no_history(self)

    def unwatch_presence(self, topic: str) -> None:
        """No local session wants ``topic``'s presence events any more."""
        raise _no_history(self)
