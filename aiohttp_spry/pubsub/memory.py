"""The in-memory broker, Spry's default: one process, no service, no configuration."""

from __future__ import annotations

from .broker import Broker, Deliver


class MemoryBroker(Broker):
    """Publish/subscribe within one process (one application), and no further.

    Every subscriber lives in this process, where :class:`Fanout` already
    delivers each message, so there is nothing to carry: each method only
    keeps the broker contract. Run several processes (gunicorn workers,
    hosts) with :class:`~aiohttp_spry.pubsub.redis.RedisBroker` instead;
    with this broker each process is its own world.
    """

    __slots__ = ("_started",)

    def __init__(self) -> None:
        self._started = False

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

    def __repr__(self) -> str:
        return "MemoryBroker()"
