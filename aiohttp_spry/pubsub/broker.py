"""The broker interface: how published messages travel between processes.

Local delivery is always done in-process by :class:`~aiohttp_spry.pubsub.fanout.Fanout`
(one encoded frame written to every local subscriber), whatever the broker. A
broker carries each published message to the *other* processes and hands the
messages they publish to ``deliver``. That split is why local subscribers keep
receiving while a remote broker is unreachable.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

#: Called by a broker for a message another process published:
#: ``deliver(topic, payload, binary)``; ``payload`` is the encoded message.
Deliver = Callable[[str, bytes, bool], None]


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
