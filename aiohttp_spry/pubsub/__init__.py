"""Topic publish/subscribe for WebSocket sessions.

Sessions subscribe with ``await ws.subscribe(topic)``; messages go out with
``await ws.publish(topic, data)`` (everyone but the sender) or
``await spry.publish(app, topic, data)`` (everyone; from HTTP routes and
background tasks). Local delivery happens in-process (:mod:`.fanout`); the
application's :class:`Broker` carries messages between processes:
:class:`MemoryBroker` (the default: this process only) or
:class:`~aiohttp_spry.pubsub.redis.RedisBroker` (``pip install 'aiohttp_spry[redis]'``).
"""

from __future__ import annotations

from .broker import Broker, Deliver, Listener
from .fanout import FANOUT_KEY, Fanout
from .history import HistoryPolicy
from .memory import MemoryBroker
from .positions import Position, SubscribeResult, parse_position
from .presence import PresenceChange, PresenceEvent

_REDIS_SCHEMES = ("redis", "rediss", "unix")
_CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


def broker_from_url(url: str | None) -> Broker:
    """The broker a URL names: ``None`` or ``""`` → in-memory; ``redis://…`` → Redis;
    ``redis+cluster://host:port`` → a Redis Cluster (sharded pub/sub).

    >>> broker_from_url(None)
    MemoryBroker()

    Raises:
        TypeError: ``url`` is not a ``str`` or ``None``.
        ValueError: an unknown scheme.
        ModuleNotFoundError: a Redis URL without ``pip install 'aiohttp_spry[redis]'``.
    """
    if url is not None and not isinstance(url, str):
        raise TypeError(
            f"broker must be a Broker, a URL str such as 'redis://127.0.0.1:6379/0', or None; "
            f"got {type(url).__name__} {url!r}"
        )
    if not url:
        return MemoryBroker()
    scheme = url.partition("://")[0].lower()
    if scheme in _CLUSTER_SCHEMES or scheme in _REDIS_SCHEMES:
        try:
            if scheme in _CLUSTER_SCHEMES:
                from .cluster import RedisClusterBroker

                return RedisClusterBroker(url)
            from .redis import RedisBroker

            return RedisBroker(url)
        except ImportError as missing:
            raise ModuleNotFoundError(
                f"a {scheme}:// broker URL needs redis-py: pip install 'aiohttp_spry[redis]' "
                "(the extra) or pip install 'redis>=5.0.1'"
            ) from missing
    raise ValueError(
        f"unknown broker URL scheme {scheme!r} in {url!r}: use redis://host:port/db, "
        "rediss:// or unix://, redis+cluster://host:port for a Redis Cluster, or nothing "
        "for the in-memory broker"
    )


__all__ = [
    "FANOUT_KEY",
    "Broker",
    "Deliver",
    "Fanout",
    "HistoryPolicy",
    "Listener",
    "MemoryBroker",
    "Position",
    "PresenceChange",
    "PresenceEvent",
    "SubscribeResult",
    "broker_from_url",
    "parse_position",
]
