"""The Redis Cluster broker: sharded pub/sub, one topic on one shard, one link per shard.

Needs ``pip install 'aiohttp_spry[redis]'`` and Redis 7 or later. Selected with
``SPRY_BROKER_URL=redis+cluster://HOST:PORT`` (one startup node; the others are
discovered) or ``Spry(app, broker=RedisClusterBroker(...))``.

Classic ``PUBLISH`` on a cluster is copied to every node, so adding nodes adds
no capacity. Here a topic's messages travel on a *shard channel*
(``SSUBSCRIBE``/``SPUBLISH``) named with the topic's hash tag, like every key
of the topic (history, offset and epoch, presence): one topic, one slot, one
shard, and each Lua script runs on that shard and publishes there. Each
process holds one :class:`~.redis_link.NodeLink` per master (a subscriber and
a publisher connection each), whatever the number of topics or slots.

The semantics are those of :class:`~.redis.RedisBroker`, per shard: order per
publisher and topic, at most once for topics without history, exactly once
with positions and recovery for topics with history, presence, one WARNING
when a shard's outage starts and one when it ends, resubscription by itself.
What a cluster adds:

- A shard that is down holds up only its own topics: every shard has its own
  links, queue and backoff.
- The slot map is read again every ``topology_refresh`` seconds, and at once
  when a node answers ``MOVED`` or drops a subscription because its slot moved
  (resharding, a failover, a node added): subscriptions move to the new owner,
  and topics with history read what passed meanwhile. Messages a node refused
  with ``MOVED`` go to the owner first in line; those refused while their slot
  is moving (``ASK``, ``TRYAGAIN``) are sent again shortly.
- Run the cluster with ``cluster-require-full-coverage no``: with ``yes``, one
  master down stops every shard.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Iterable
from typing import Final

from redis.asyncio import Redis, RedisCluster
from redis.crc import key_slot
from redis.exceptions import RedisClusterException
from yarl import URL

from ..log import pubsub_logger as logger
from .broker import Deliver
from .redis import RedisBrokerBase
from .redis_errors import LOST, Commands
from .redis_history import Positioned
from .redis_link import NodeLink, Pending
from .redis_names import SLOTS, ClusterNames, RedisNames

__all__ = ["CLUSTER_SCHEMES", "RedisClusterBroker"]

#: URL schemes of the cluster broker, and the scheme of one node's URL for each.
CLUSTER_SCHEMES: Final = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
#: The shortest wait between two topology reads a MOVED triggers.
_REREAD_WAIT: Final = 0.05


class RedisClusterBroker(RedisBrokerBase):
    """Carries published messages between processes through a Redis Cluster's
    sharded pub/sub (``SSUBSCRIBE``/``SPUBLISH``), one topic on one shard.

    Example (it connects when the application starts)::

        spry = Spry(app, broker=RedisClusterBroker("redis+cluster://127.0.0.1:7000"))

    Args:
        url: ``redis+cluster://[:password@]host:port`` (or ``rediss+cluster://``):
            any node of the cluster; the others are discovered.
        topology_refresh: seconds between two reads of the cluster's slot map
            (a node added, a failover, slots moved); a ``MOVED`` reply also
            triggers one.

    The other options are those of :class:`~.redis.RedisBroker`, per shard:
    ``max_pending`` bounds each shard's queue, ``max_connections`` each shard's pool
    of its subscriber and publisher, and apart the one-off commands (history reads,
    presence) running at once, which wait for a free one.

    Raises:
        ValueError: not a ``redis+cluster://`` URL with a host and a port, or a
            ``channel_prefix`` with a brace (it would put every topic on one slot).
    """

    def __init__(
        self,
        url: str,
        *,
        topology_refresh: float = 5.0,
        channel_prefix: str = "aiohttp_spry:",
        max_pending: int = 10_000,
        reconnect_min: float = 0.05,
        reconnect_max: float = 2.0,
        subscribe_timeout: float = 5.0,
        connect_timeout: float = 2.0,
        max_connections: int = 32,
        pool_timeout: float = 60.0,
        presence_ttl: float = 15.0,
        presence_refresh: float = 5.0,
    ) -> None:
        parsed = URL(url) if isinstance(url, str) else None
        if parsed is None or parsed.scheme not in CLUSTER_SCHEMES or not parsed.host:
            raise ValueError(
                f"url must be redis+cluster://HOST:PORT (or rediss+cluster://), got {url!r}"
            )
        if parsed.path not in ("", "/", "/0"):
            raise ValueError(f"a Redis Cluster has database 0 only; drop the path of {url!r}")
        if not topology_refresh > 0:
            raise ValueError(
                f"topology_refresh must be a positive number of seconds, got {topology_refresh!r}"
            )
        self.topology_refresh = topology_refresh
        self._startup = (parsed.host, parsed.port or 6379)
        self._node_scheme = CLUSTER_SCHEMES[parsed.scheme]
        super().__init__(
            url,
            channel_prefix=channel_prefix,
            max_pending=max_pending,
            reconnect_min=reconnect_min,
            reconnect_max=reconnect_max,
            subscribe_timeout=subscribe_timeout,
            connect_timeout=connect_timeout,
            max_connections=max_connections,
            pool_timeout=pool_timeout,
            presence_ttl=presence_ttl,
            presence_refresh=presence_refresh,
        )

    def _init_links(self) -> None:
        # slot → "host:port" of its master (None: not known or not covered).
        self._slots: list[str | None] = [None] * SLOTS
        self._shards: dict[str, NodeLink] = {}
        self._channels: set[bytes] = set()  # wanted by local subscribers, on any shard
        self._held: deque[Pending] = deque()  # waiting for a first topology
        self._held_positioned: deque[Positioned] = deque()
        self._topology_lock = asyncio.Lock()
        self._topology_reads = 0
        self._past_outages = 0  # of shards that left the cluster
        self._topology_known = asyncio.Event()
        self._closing_links: set[asyncio.Task[None]] = set()
        # redis-py's cluster pools refuse a command past max_connections per node
        # (they do not wait): one-off commands (history reads, presence) wait here.
        self._command_slots = asyncio.Semaphore(self.max_connections)
        self._client_init = asyncio.Lock()
        self._client_ready = False
        names = self._names
        assert isinstance(names, ClusterNames)
        self._cluster_names = names

    @staticmethod
    def _make_names(prefix: bytes) -> RedisNames:
        return ClusterNames(prefix)

    @property
    def shards(self) -> dict[str, frozenset[bytes]]:
        """Each master (``host:port``) this broker holds a link to, and the channels
        it subscribes there (for tests, metrics and debugging)."""
        return {name: link.wanted for name, link in self._shards.items()}

    @property
    def outages(self) -> int:
        """Shard outages since start: each shard's outage counts once."""
        return self._past_outages + sum(link.outages for link in self._shards.values())

    # -- the links -----------------------------------------------------------------

    def _links(self) -> Iterable[NodeLink]:
        return tuple(self._shards.values())

    def _link_for(self, channel: bytes) -> NodeLink | None:
        name = self._slots[key_slot(channel)]
        return None if name is None else self._shards.get(name)

    def _node_url(self, name: str) -> str:
        host, _, port = name.rpartition(":")
        url = URL(self.url).with_scheme(self._node_scheme).with_host(host).with_port(int(port))
        return str(url.with_path("/0"))

    async def start(self, deliver: Deliver) -> None:
        self._started(deliver)
        host, port = self._startup
        url = URL(self.url).with_scheme(self._node_scheme)
        self._client = cluster = RedisCluster(
            host=host,
            port=port,
            password=url.password,
            username=url.user or None,
            ssl=self._node_scheme == "rediss",
            socket_connect_timeout=self.connect_timeout,
            require_full_coverage=False,
            max_connections=self.max_connections,
        )
        self._history.bind(cluster)
        self._presence.bind(cluster)
        with contextlib.suppress(*LOST, RedisClusterException, asyncio.TimeoutError):
            await asyncio.wait_for(self._ready_client(), self.connect_timeout)
        loop = asyncio.get_running_loop()
        self._start_tasks()
        self._tasks.append(
            loop.create_task(self._topology_forever(), name="aiohttp_spry redis cluster topology")
        )
        # Like the single-node broker, start even while the cluster is down; but
        # wait a moment for the topology so the first subscriptions go out at once.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._topology_known.wait(), self.connect_timeout)

    async def _ready_client(self) -> Commands:
        """The cluster client, initialised once, before any command: left to redis-py,
        the first commands of a burst race to initialise it and break the connections
        it is opening.

        Raises:
            ConnectionError: not started; or what initialising raised (the cluster
                is unreachable).
        """
        client = self._command_client()
        if not self._client_ready:
            async with self._client_init:
                if not self._client_ready:
                    assert isinstance(client, RedisCluster)
                    await client.initialize()
                    self._client_ready = True
        return client

    def _reachable(self, topic: str) -> Commands | None:
        return super()._reachable(topic) if self._client_ready else None

    async def _close_client(self) -> None:
        if self._closing_links:
            await asyncio.wait(set(self._closing_links))
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(*LOST):
                await client.aclose()
        unsent = len(self._held) + len(self._held_positioned)
        if unsent:
            logger.warning(
                "Redis cluster broker closing with %d message(s) that never had a shard: %s",
                unsent,
                self.safe_url,
            )
            error = ConnectionError("the Redis cluster broker closed before a shard had it")
            for item in self._held_positioned:
                item.fail(error)
            self._held.clear()
            self._held_positioned.clear()

    # -- topology --------------------------------------------------------------------

    async def _read_slots(self) -> list[str | None] | None:
        """The slot map from the first node that answers ``CLUSTER SLOTS``, or ``None``."""
        candidates: list[Redis] = [link.client for link in self._shards.values() if not link.down]
        startup: Redis | None = None
        if not candidates:
            startup = self._node_client(self._node_url(f"{self._startup[0]}:{self._startup[1]}"))
            candidates.append(startup)
        try:
            for client in candidates:
                try:
                    reply = await client.execute_command("CLUSTER SLOTS")  # type: ignore[no-untyped-call]
                except LOST as error:
                    logger.debug("Redis cluster: CLUSTER SLOTS failed on a node: %s", error)
                    continue
                slots: list[str | None] = [None] * SLOTS
                for first, last, master, *_ in reply:
                    host = master[0].decode() if isinstance(master[0], bytes) else master[0]
                    name = f"{host or self._startup[0]}:{int(master[1])}"
                    slots[int(first) : int(last) + 1] = [name] * (int(last) - int(first) + 1)
                return slots
            return None
        finally:
            if startup is not None:
                await startup.aclose()

    async def _refresh(self) -> bool:
        """Read the slot map and give every channel and waiting message its shard.

        Returns:
            Whether the map could be read.
        """
        async with self._topology_lock:
            slots = await self._read_slots()
            self._topology_reads += 1
            if slots is None:
                return False
            await self._apply(slots)
            self._topology_known.set()
            return True

    async def _apply(self, slots: list[str | None]) -> None:
        masters = {name for name in slots if name is not None}
        owned: dict[str, set[int]] = {name: set() for name in masters}
        for slot, name in enumerate(slots):
            if name is not None:
                owned[name].add(slot)
        changed = slots != self._slots
        self._slots = slots
        for name in sorted(masters - self._shards.keys()):
            link = self._new_link(
                f"shard {name} of {self.safe_url}",
                self._cluster_names.liveness_on(self._node, owned[name]),
            )
            self._shards[name] = link
            link.start(self._node_client(self._node_url(name)))
            logger.info("Redis cluster broker: shard %s holds %d slot(s)", name, len(owned[name]))
        for name, link in self._shards.items():
            if name in masters and key_slot(link.liveness) not in owned[name]:
                link.set_liveness(self._cluster_names.liveness_on(self._node, owned[name]))
        if changed:
            self._move_channels()
        gone = [name for name in self._shards if name not in masters]
        for name in gone:
            link = self._shards.pop(name)
            plain, positioned = link.take_all()
            logger.warning(
                "Redis cluster broker: %s left the cluster; %d waiting message(s) go to "
                "the new owners",
                link.label,
                len(plain) + len(positioned),
            )
            self._past_outages += link.outages
            # Closed apart: this may run in one of that link's own tasks (its node
            # told it the slots moved), which its close() cancels.
            closing = asyncio.get_running_loop().create_task(
                link.close(), name=f"aiohttp_spry close {link.label}"
            )
            self._closing_links.add(closing)
            closing.add_done_callback(self._closing_links.discard)
            self._route(plain, positioned, first=True)
        if self._held or self._held_positioned:
            plain, positioned = list(self._held), list(self._held_positioned)
            self._held.clear()
            self._held_positioned.clear()
            self._route(plain, positioned, first=False)

    def _move_channels(self) -> None:
        """Subscribe every wanted channel on its owner, and only there."""
        for channel in self._channels:
            owner = self._link_for(channel)
            for link in self._shards.values():
                if link is not owner and channel in link.wanted:
                    link.unsubscribe(channel)
            if owner is not None:
                owner.want(channel)

    def _route(self, plain: list[Pending], positioned: list[Positioned], *, first: bool) -> None:
        """Give messages to their shards, in their order (held while not covered)."""
        by_link: dict[NodeLink | None, tuple[list[Pending], list[Positioned]]] = {}
        for item in plain:
            by_link.setdefault(self._link_for(item[0]), ([], []))[0].append(item)
        for positioned_item in positioned:
            link = self._link_for(self._names.channel(positioned_item.topic))
            by_link.setdefault(link, ([], []))[1].append(positioned_item)
        for link, (link_plain, link_positioned) in by_link.items():
            if link is None:
                self._hold(link_plain, link_positioned)
            else:
                link.put(link_plain, link_positioned, first=first)

    async def _topology_forever(self) -> None:
        attempt = 0
        warned = False
        while not self._closing:
            try:
                known = await self._refresh()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("Redis cluster broker could not read the topology")
                known = False
            if known and not self._client_ready:
                with contextlib.suppress(*LOST, RedisClusterException):
                    await self._ready_client()
            if known:
                attempt = 0
                if warned:
                    logger.warning("Redis cluster broker reached %s", self.safe_url)
                    warned = False
                await asyncio.sleep(self.topology_refresh)
                continue
            if not self._shards and not warned:
                logger.warning(
                    "Redis cluster broker cannot reach %s to read the slot map; local "
                    "delivery continues, retrying with backoff",
                    self.safe_url,
                )
                warned = True
            await asyncio.sleep(min(self._backoff.compute(attempt), self.topology_refresh))
            attempt += 1

    # -- what the links report --------------------------------------------------------

    async def moved(self, link: NodeLink) -> None:
        reads = self._topology_reads
        async with self._topology_lock:
            fresh = self._topology_reads != reads  # another task read it meanwhile
        if not fresh:
            await self._refresh()
        await asyncio.sleep(_REREAD_WAIT)  # never a tight loop on a map that lags

    async def reroute(
        self, link: NodeLink, plain: list[Pending], positioned: list[Positioned]
    ) -> None:
        await self.moved(link)
        self._route(plain, positioned, first=True)

    # -- the broker contract, where the channel decides the shard -----------------------

    async def _subscribe_channel(self, channel: bytes) -> None:
        self._channels.add(channel)
        await super()._subscribe_channel(channel)

    def _unsubscribe_channel(self, channel: bytes) -> None:
        self._channels.discard(channel)
        for link in self._shards.values():
            if channel in link.wanted:
                link.unsubscribe(channel)

    def _hold(self, plain: list[Pending], positioned: list[Positioned]) -> None:
        held, held_positioned = self._held, self._held_positioned
        for item in plain:
            if len(held) >= self.max_pending:
                held.popleft()
            held.append(item)
        for positioned_item in positioned:
            if len(held_positioned) >= self.max_pending:
                held_positioned.popleft().fail(
                    ConnectionError("dropped: the Redis cluster broker's buffer was full")
                )
            held_positioned.append(positioned_item)

    async def _leave_all(self, client: Commands) -> None:
        # Topic by topic: those of a shard that is down expire there.
        for topic, members in list(self._presence.present.items()):
            reachable = self._reachable(topic)
            for id in list(members):
                await self._presence.leave(reachable, topic, id)
