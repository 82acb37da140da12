"""One Redis node or a Redis Cluster, seen the same way by the tests that run on both.

The semantics tests (order, exactly once across processes, recovery, presence,
an outage, resubscription) take a :class:`Backend`: a single ``redis-server``
(:class:`SingleNode`, the ``redis://`` broker) or a 3-master cluster
(:class:`Cluster`, the ``redis+cluster://`` broker). Tests name channels as the
single-node broker does (``<prefix><topic>``); the cluster backend translates
them to the topic's shard channel on the shard that owns it.
"""

from __future__ import annotations

from typing import Any, Protocol

from aiohttp_spry.pubsub import Broker
from aiohttp_spry.pubsub.cluster import RedisClusterBroker
from aiohttp_spry.pubsub.redis import RedisBroker
from aiohttp_spry.pubsub.redis_names import ClusterNames
from tests.support.clusterproc import ClusterNode, RedisClusterProcess, key_slot
from tests.support.redisproc import RedisProcess

__all__ = ["Backend", "Cluster", "SingleNode"]

PREFIX = "aiohttp_spry:"


class Backend(Protocol):
    """What the shared tests need of the Redis behind the brokers."""

    #: ``redis`` or ``cluster`` (the test id).
    kind: str

    @property
    def url(self) -> str:
        """The ``SPRY_BROKER_URL`` of the broker for it."""

    def numsub(self, channel: str) -> int:
        """How many processes subscribe the topic of ``channel`` (``<prefix><topic>``)."""

    def brokers_connected(self, prefix: str = PREFIX) -> int:
        """How many brokers with ``prefix`` hold their subscriber connection(s)."""

    def kill(self, channel: str) -> None:
        """SIGKILL the Redis process that carries ``channel`` (a crash)."""

    def restart(self) -> None:
        """Start what :meth:`kill` killed again, empty (no persistence)."""

    def broker(self, **options: Any) -> Broker:
        """A broker for it, with ``options`` (``channel_prefix=...``)."""

    def client_connections(self) -> int:
        """Client connections (``CLIENT LIST``) on the node that has the most."""


class SingleNode:
    """One ``redis-server``: everything travels through it."""

    kind = "redis"

    def __init__(self, redis: RedisProcess) -> None:
        self.redis = redis

    @property
    def url(self) -> str:
        return self.redis.url

    def numsub(self, channel: str) -> int:
        try:
            return self.redis.numsub(channel)
        except OSError:
            return -1

    def brokers_connected(self, prefix: str = PREFIX) -> int:
        try:
            reply = self.redis.command("PUBSUB", "CHANNELS", prefix + "_node:*")
        except OSError:
            return -1
        return int(reply.split(b"\r\n", 1)[0][1:])

    def kill(self, channel: str) -> None:
        self.redis.kill()

    def broker(self, **options: Any) -> Broker:
        return RedisBroker(self.url, **options)

    def client_connections(self) -> int:
        return self.redis.command("CLIENT", "LIST").count(b"\n")

    def restart(self) -> None:
        self.redis.start()


class Cluster:
    """A Redis Cluster: a topic lives on the shard that owns its slot."""

    kind = "cluster"

    def __init__(self, cluster: RedisClusterProcess) -> None:
        self.cluster = cluster
        self._killed: list[ClusterNode] = []

    @property
    def url(self) -> str:
        return self.cluster.url

    def broker(self, **options: Any) -> Broker:
        return RedisClusterBroker(self.url, **options)

    def client_connections(self) -> int:
        counts = []
        for node in self.cluster.nodes:
            reply = self.cluster.call(node, "CLIENT", "LIST")
            assert isinstance(reply, bytes), reply
            counts.append(reply.count(b"\n"))
        return max(counts)

    @staticmethod
    def shard_channel(channel: str) -> bytes:
        """The cluster broker's channel for the single-node broker's ``channel``
        (``<prefix><topic>``, the prefix ending at the first ``:``)."""
        prefix, colon, topic = channel.partition(":")
        assert colon, f"{channel!r} has no prefix"
        return ClusterNames((prefix + colon).encode()).channel(topic)

    def shard_of(self, channel: str) -> ClusterNode:
        """The master that carries ``channel``'s topic."""
        return self.cluster.owner(key_slot(self.shard_channel(channel)))

    def numsub(self, channel: str) -> int:
        try:
            return self.cluster.shard_numsub(self.shard_channel(channel))
        except (OSError, AssertionError, KeyError):
            return -1

    def brokers_connected(self, prefix: str = PREFIX) -> int:
        """Brokers subscribed on every master (each holds one liveness channel per shard)."""
        try:
            return min(
                len(self.cluster.shard_channels(node, prefix + "_node:*"))
                for node in self.cluster.nodes
            )
        except (OSError, AssertionError):
            return -1

    def kill(self, channel: str) -> None:
        node = self.shard_of(channel)
        self._killed.append(node)
        self.cluster.kill(node)

    def restart(self) -> None:
        while self._killed:
            self.cluster.restart(self._killed.pop())
