"""The Redis broker: publish/subscribe across processes and hosts through Redis pub/sub.

Needs ``pip install 'aiohttp_spry[redis]'`` (``redis.asyncio``). Delivery
semantics, as written in the README and tested against a real ``redis-server``:

- Local subscribers are served in-process first, so they keep receiving while
  Redis is unreachable. Other processes get each message through Redis.
- Order is kept per publisher (process) and topic: one connection publishes,
  in publish order; one connection per process receives.
- At most once across processes (Redis pub/sub): a message published while a
  subscriber's process is disconnected never reaches it; nothing is delivered
  twice.
- ``publish`` never blocks and never raises for an outage: messages wait in a
  bounded buffer (``max_pending``, oldest dropped first) and go out once Redis
  is back; a batch in flight when the connection broke is dropped, not resent.
- Topics with history (:mod:`.history`) are published with one Lua script each
  (:mod:`.redis_scripts`: offset, ``XADD … MAXLEN ~``, ``EXPIRE``, ``PUBLISH``
  with the position), retried until Redis has them (a message id checked in
  the same script applies a retry once), and delivered here too through the
  subscriber connection, so every process sees one order; after that
  connection was down, the fan-out reads what it missed with ``XRANGE``.
- Presence is a sorted set scored by expiry plus a hash per topic, refreshed
  every ``presence_refresh`` seconds; entries of a process that died expire
  after ``presence_ttl`` and are removed (with a leave event) by the next
  process that looks.
- On an outage both connections reconnect by themselves with exponential
  backoff (``reconnect_min`` doubling to ``reconnect_max``, with jitter) and
  every subscription is restored. One WARNING when the outage starts, one when
  it ends (with its length and how many messages were dropped); nothing per
  message.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import secrets
from collections.abc import Iterable, Mapping
from typing import Any, Final

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import EqualJitterBackoff, NoBackoff
from yarl import URL

from ..log import pubsub_logger as logger
from .broker import Broker, Deliver, Listener
from .envelope import Stored
from .history import HistoryPolicy, HistoryRead, HistoryRules
from .positions import Position
from .redis_errors import LOST, Commands
from .redis_history import Positioned, RedisHistory
from .redis_link import Link, NodeLink, Pending
from .redis_names import RedisNames
from .redis_presence import RedisPresence

__all__ = ["Link", "RedisBroker", "RedisBrokerBase"]

_LOST: Final = LOST
_TEXT: Final = b"t"
_BINARY: Final = b"b"
_NODE_BYTES: Final = 8
_CLOSE_WAIT: Final = 1.0
#: The subscriber, the publisher, the subscription sync and one command at least.
_MIN_CONNECTIONS: Final = 4
#: No retries inside redis-py: a broken connection surfaces at once and the
#: broker reconnects with its own backoff and logging.
_NO_RETRY: Final = Retry(NoBackoff(), 0)


class RedisBrokerBase(Broker):
    """What the single-node and the cluster broker share: the broker contract,
    history and presence, and decoding what the node links receive. The two
    differ in how many node links they hold and which one carries a channel.
    """

    supports_history = True

    def __init__(
        self,
        url: str,
        *,
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
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending!r}")
        if not isinstance(max_connections, int) or max_connections < _MIN_CONNECTIONS:
            raise ValueError(
                f"max_connections must be an int >= {_MIN_CONNECTIONS} (the subscriber, the "
                f"publisher and commands), got {max_connections!r}"
            )
        if not pool_timeout > 0:
            raise ValueError(
                f"pool_timeout must be a positive number of seconds, got {pool_timeout!r}"
            )
        if not 0 < reconnect_min <= reconnect_max:
            raise ValueError(
                "reconnect_min and reconnect_max must satisfy 0 < min <= max, got "
                f"{reconnect_min!r} and {reconnect_max!r}"
            )
        if not 0 < presence_refresh < presence_ttl:
            raise ValueError(
                "presence_refresh and presence_ttl must satisfy 0 < refresh < ttl, got "
                f"{presence_refresh!r} and {presence_ttl!r}"
            )
        self.url = url
        self.channel_prefix = channel_prefix.encode()
        self._names = self._make_names(self.channel_prefix)
        self.presence_ttl = presence_ttl
        self.presence_refresh = presence_refresh
        self.max_pending = max_pending
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        # Half to all of min * 2**attempt, capped at max: never a thundering herd.
        self._backoff = EqualJitterBackoff(cap=reconnect_max, base=reconnect_min)
        self.subscribe_timeout = subscribe_timeout
        self.connect_timeout = connect_timeout
        self.max_connections = max_connections
        self.pool_timeout = pool_timeout
        # Messages from this process come back from Redis; the node id skips them.
        self._node = secrets.token_bytes(_NODE_BYTES)
        self._deliver: Deliver | None = None
        # The client of one-off commands (history reads, presence).
        self._client: Commands | None = None
        self._tasks: list[asyncio.Task[None]] = []
        # History and presence (attach()): the listener, the rules, the scripts,
        # and this process's present sessions (topic → id → info JSON).
        self._listener: Listener | None = None
        self._rules: HistoryRules | None = None
        self._history = RedisHistory(self._names, max_pending)
        self._presence = RedisPresence(self._names, presence_ttl)
        self._routing = False  # whether received messages may be positioned or presence
        self._closing = False
        # How many one-off commands may run at once: the single node's bounded,
        # blocking pool already makes them wait; a cluster client's pool would refuse.
        self._command_slots: contextlib.AbstractAsyncContextManager[object] = (
            contextlib.nullcontext()
        )
        self._init_links()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.safe_url!r})"

    # -- what the cluster broker changes ----------------------------------------------

    @staticmethod
    def _make_names(prefix: bytes) -> RedisNames:
        return RedisNames(prefix)

    def _new_link(self, label: str, liveness: bytes) -> NodeLink:
        return NodeLink(
            self,
            label=label,
            names=self._names,
            liveness=liveness,
            backoff=self._backoff,
            max_pending=self.max_pending,
            subscribe_timeout=self.subscribe_timeout,
        )

    def _node_client(self, url: str) -> Redis:
        """A client of one node with its own bounded, blocking pool."""
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=self.max_connections,
            timeout=self.pool_timeout,
            retry=_NO_RETRY,
            socket_connect_timeout=self.connect_timeout,
        )
        client = Redis(connection_pool=pool, retry=_NO_RETRY)
        client.auto_close_connection_pool = True  # as Redis.from_pool does
        return client

    @abc.abstractmethod
    def _init_links(self) -> None:
        """Make the node links known before start (at the end of ``__init__``)."""
        raise NotImplementedError

    @abc.abstractmethod
    def _links(self) -> Iterable[NodeLink]:
        """Every node link."""
        raise NotImplementedError

    @abc.abstractmethod
    def _link_for(self, channel: bytes) -> NodeLink | None:
        """The link of the node that carries ``channel`` (``None``: not known yet)."""
        raise NotImplementedError

    def _reachable(self, topic: str) -> Commands | None:
        """The client for ``topic``'s presence commands, or ``None`` while its node is down."""
        link = self._link_for(self._names.channel(topic))
        if self._client is None or self._closing or link is None or link.down:
            return None
        return self._client

    @abc.abstractmethod
    async def _leave_all(self, client: Commands) -> None:
        """A clean shutdown: this process's sessions leave at once, not at expiry."""
        raise NotImplementedError

    @abc.abstractmethod
    def _hold(self, plain: list[Pending], positioned: list[Positioned]) -> None:
        """Messages with no node to go to yet (a cluster whose topology is unknown)."""
        raise NotImplementedError

    @abc.abstractmethod
    async def moved(self, link: NodeLink) -> None:
        """See :meth:`.redis_link.LinkOwner.moved`."""
        raise NotImplementedError

    @abc.abstractmethod
    async def reroute(
        self, link: NodeLink, plain: list[Pending], positioned: list[Positioned]
    ) -> None:
        """See :meth:`.redis_link.LinkOwner.reroute`."""
        raise NotImplementedError

    # -- state -------------------------------------------------------------------------

    @property
    def safe_url(self) -> str:
        """The URL without its password, for logs."""
        url = URL(self.url)
        return str(url.with_password("***")) if url.password else self.url

    @property
    def outages(self) -> int:
        """Outages since start: each counts once, however many connections broke."""
        return sum(link.outages for link in self._links())

    @property
    def connected(self) -> bool:
        links = list(self._links())
        return bool(links) and all(link.up for link in links)

    # -- lifecycle -----------------------------------------------------------------

    def _started(self, deliver: Deliver) -> None:
        if self._deliver is not None:
            raise RuntimeError(f"{self!r} was already started; use one broker per application")
        self._deliver = deliver

    def _start_tasks(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._presence_forever(), name="aiohttp_spry redis presence")
        ]

    async def close(self) -> None:
        client = self._client
        if self._presence.present and client is not None:
            with contextlib.suppress(*_LOST):
                await asyncio.wait_for(self._leave_all(client), _CLOSE_WAIT)
        self._closing = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for link in list(self._links()):
            await link.close()
        await self._close_client()
        self._deliver = None

    async def _close_client(self) -> None:
        """Close the command client, if the links do not (after them)."""
        self._client = None

    # -- the broker contract ---------------------------------------------------------

    async def subscribe(self, topic: str) -> None:
        await self._subscribe_channel(self._names.channel(topic))

    async def _subscribe_channel(self, channel: bytes) -> None:
        link = self._link_for(channel)
        if link is not None:
            await link.subscribe(channel)

    def unsubscribe(self, topic: str) -> None:
        self._unsubscribe_channel(self._names.channel(topic))

    def _unsubscribe_channel(self, channel: bytes) -> None:
        link = self._link_for(channel)
        if link is not None:
            link.unsubscribe(channel)

    def publish(self, topic: str, payload: bytes, binary: bool) -> None:
        channel = self._names.channel(topic)
        data = self._node + (_BINARY if binary else _TEXT) + payload
        link = self._link_for(channel)
        if link is None:
            self._hold([(channel, data)], [])
        else:
            link.publish(channel, data)

    # -- history (:mod:`.redis_history`) -------------------------------------------

    def attach(self, listener: Listener, rules: HistoryRules) -> None:
        self._listener = listener
        self._rules = rules if rules else None
        self._routing = self._rules is not None or bool(self._presence.watched)

    def publish_positioned(
        self, topic: str, message: Stored, msgid: str, policy: HistoryPolicy, *, ack: bool
    ) -> asyncio.Future[Position] | None:
        link = self._link_for(self._names.channel(topic))
        if link is not None:
            return link.publish_positioned(topic, message, msgid, policy, ack=ack)
        # No shard known for it yet (a cluster whose slot map is not read yet).
        future = asyncio.get_running_loop().create_future() if ack else None
        self._hold([], [Positioned(topic, message, msgid, policy, future)])
        return future

    def _command_client(self) -> Commands:
        if self._client is None:
            raise ConnectionError(f"{self!r} is not started")
        return self._client

    async def _ready_client(self) -> Commands:
        """The client of one-off commands, ready for them."""
        return self._command_client()

    async def read_history(
        self, topic: str, since: Position | None, policy: HistoryPolicy
    ) -> HistoryRead:
        async with self._command_slots:
            return await self._history.read(await self._ready_client(), topic, since, policy)

    # -- presence (:mod:`.redis_presence`) --------------------------------------------

    async def presence_join(self, topic: str, id: str, info: Mapping[str, Any]) -> None:
        async with self._command_slots:
            await self._presence.join(self._reachable(topic), topic, id, info)

    async def presence_leave(self, topic: str, id: str) -> None:
        async with self._command_slots:
            await self._presence.leave(self._reachable(topic), topic, id)

    async def presence(self, topic: str) -> dict[str, Mapping[str, Any]]:
        async with self._command_slots:
            return await self._presence.members(await self._ready_client(), topic)

    async def presence_count(self, topic: str) -> int:
        async with self._command_slots:
            return await self._presence.count(await self._ready_client(), topic)

    async def watch_presence(self, topic: str) -> None:
        self._presence.watched.add(topic)
        self._routing = self._listener is not None
        await self._subscribe_channel(self._presence.channel(topic))

    def unwatch_presence(self, topic: str) -> None:
        self._presence.watched.discard(topic)
        self._routing = self._rules is not None or bool(self._presence.watched)
        self._unsubscribe_channel(self._presence.channel(topic))

    async def _presence_forever(self) -> None:
        """Refresh this process's present sessions; prune expired ones where we look."""
        presence = self._presence
        while not self._closing:
            await asyncio.sleep(self.presence_refresh)
            for topic in {*presence.present, *presence.watched}:
                client = self._reachable(topic)
                if client is None:
                    continue
                try:
                    async with self._command_slots:
                        await presence.refresh(client, topic)
                except asyncio.CancelledError:
                    raise
                except _LOST as error:
                    logger.debug("Redis presence refresh of %r failed: %s", topic, error)
                except Exception:
                    logger.exception("Redis presence refresh of %r failed", topic)

    # -- what the links report (:class:`.redis_link.LinkOwner`) ---------------------------

    def on_message(self, channel: bytes, data: bytes) -> None:
        # Only an application with history rules or watched presence pays for this.
        if self._routing:
            try:
                assert self._listener is not None
                topic, presence = self._names.parse(channel)
                if presence:
                    self._listener.presence_changed(RedisPresence.event(topic, data))
                    return
                if self._rules is not None and self._rules.policy(topic) is not None:
                    position, kind, payload, msgid = RedisHistory.message(data)
                    self._listener.deliver_positioned(topic, position, kind, payload, msgid)
                    return
            except (ValueError, KeyError, IndexError) as error:
                # Another application's format on our prefix (say one without the
                # history rule): never a reason to drop the connection.
                logger.warning(
                    "Redis broker ignored a malformed message on %r (%s: %s); do all "
                    "processes declare the same history rules?",
                    channel,
                    type(error).__name__,
                    error,
                )
                return
        if data[:_NODE_BYTES] == self._node:
            return  # from this process: delivered locally when it was published
        assert self._deliver is not None
        binary = data[_NODE_BYTES : _NODE_BYTES + 1] == _BINARY
        self._deliver(self._names.topic(channel), data[_NODE_BYTES + 1 :], binary)

    def on_confirm(self, channel: bytes) -> None:
        if self._rules is None or self._listener is None:
            return
        try:
            topic, presence = self._names.parse(channel)
        except ValueError:
            return
        if not presence and self._rules.policy(topic) is not None:
            # Whatever passed while this channel was not subscribed is read
            # from the history (nothing, on a first subscription).
            self._listener.resync(topic)


class RedisBroker(RedisBrokerBase):
    """Carries published messages between processes through Redis pub/sub.

    Example (it connects when the application starts)::

        spry = Spry(app, broker=RedisBroker("redis://127.0.0.1:6379/0"))

    Args:
        url: ``redis://[:password@]host:port/db``, ``rediss://`` or ``unix://``.
        channel_prefix: prepended to each topic to name its Redis channel, so
            several applications can share one Redis.
        max_pending: the most messages kept while Redis is unreachable; past
            it the oldest are dropped (counted in the reconnect log line).
        reconnect_min: the first wait, in seconds, before a reconnect attempt.
        reconnect_max: the longest wait, in seconds, between reconnect attempts.
        subscribe_timeout: the longest ``subscribe()`` waits for Redis to
            confirm a subscription before returning anyway.
        connect_timeout: seconds to wait for a TCP connection to Redis.
        max_connections: the most connections to Redis this broker opens (the
            subscriber, the publisher and commands such as history reads). A
            burst of joins waits for a free one (at most ``pool_timeout``
            seconds) instead of opening one each: redis-py's own pool refuses
            a command past 100 connections, and Redis past its ``maxclients``.
        pool_timeout: seconds a command waits for a free connection (a reconnect
            storm of 5,000 members each reading 100 messages keeps the pool busy
            for several seconds: the wait is a queue, not an outage).
        presence_ttl: seconds a present session's entry lives without a
            refresh (a process that dies takes at most this, plus
            ``presence_refresh``, to be seen leaving).
        presence_refresh: seconds between two refreshes of this process's
            present sessions (which also removes others' expired ones).
    """

    def _init_links(self) -> None:
        self._link = self._new_link(self.safe_url, self._names.liveness(self._node))

    async def start(self, deliver: Deliver) -> None:
        self._started(deliver)
        client = self._node_client(self.url)
        self._client = client
        self._history.bind(client)
        self._presence.bind(client)
        self._link.start(client)
        self._start_tasks()

    def _links(self) -> Iterable[NodeLink]:
        """Every node link (one here; one per shard on a cluster)."""
        return (self._link,)

    def _link_for(self, channel: bytes) -> NodeLink | None:
        """The link of the node that carries ``channel`` (``None``: not known yet)."""
        return self._link

    async def _leave_all(self, client: Commands) -> None:
        """A clean shutdown: this process's sessions leave at once, not at expiry."""
        assert isinstance(client, Redis)
        if not self.connected:
            return  # they expire
        async with client.pipeline(transaction=False) as pipe:
            await self._presence.leave_all(pipe)
            await pipe.execute()

    def _hold(self, plain: list[Pending], positioned: list[Positioned]) -> None:
        raise AssertionError("a single Redis node always has its link")

    async def moved(self, link: NodeLink) -> None:
        logger.error(
            "Redis at %s answered MOVED: it is a Redis Cluster node; use "
            "SPRY_BROKER_URL=redis+cluster://HOST:PORT (the cluster broker)",
            link.label,
        )
        await asyncio.sleep(self.reconnect_max)

    async def reroute(
        self, link: NodeLink, plain: list[Pending], positioned: list[Positioned]
    ) -> None:
        await self.moved(link)
        error = ConnectionError(f"{link.label} is a Redis Cluster node: use redis+cluster://")
        for item in positioned:
            item.fail(error)
