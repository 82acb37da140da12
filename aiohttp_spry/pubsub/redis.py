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

import asyncio
import contextlib
import enum
import secrets
from collections import deque
from collections.abc import Mapping
from typing import Any, Final

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import EqualJitterBackoff, NoBackoff
from yarl import URL

from ..log import pubsub_logger as logger
from .broker import Broker, Deliver, Listener
from .envelope import Stored
from .history import HistoryPolicy, HistoryRead, HistoryRules
from .positions import Position
from .redis_errors import LOST
from .redis_history import RedisHistory
from .redis_presence import PRESENCE_MARK, RedisPresence

_LOST: Final = LOST
_TEXT: Final = b"t"
_BINARY: Final = b"b"
_NODE_BYTES: Final = 8
_BATCH: Final = 512
_CLOSE_ATTEMPTS: Final = 5
_CLOSE_WAIT: Final = 1.0
#: The subscriber, the publisher, the subscription sync and one command at least.
_MIN_CONNECTIONS: Final = 4


class Link(enum.Enum):
    """The broker's two connections to Redis, each of which can be down."""

    SUBSCRIBER = "subscriber"
    PUBLISHER = "publisher"


class RedisBroker(Broker):
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
        self._client: Redis | None = None
        self._pubsub: PubSub | None = None
        self._tasks: list[asyncio.Task[None]] = []
        # Channels: wanted by local subscribers / told to the current
        # connection / confirmed by Redis on it.
        self._wanted: set[bytes] = set()
        self._sent: set[bytes] = set()
        self._confirmed: set[bytes] = set()
        self._waiters: dict[bytes, list[asyncio.Future[None]]] = {}
        self._changed = asyncio.Event()
        self._pending: deque[tuple[bytes, bytes]] = deque()
        # History and presence (attach()): the listener, the rules, the scripts,
        # and this process's present sessions (topic → id → info JSON).
        self._listener: Listener | None = None
        self._rules: HistoryRules | None = None
        self._history = RedisHistory(self.channel_prefix, max_pending)
        self._presence = RedisPresence(self.channel_prefix, presence_ttl)
        self._routing = False  # whether received messages may be positioned or presence
        self._has_pending = asyncio.Event()
        # Outage bookkeeping: which connections are down, since when, losses.
        self._down: set[Link] = set()
        self._outage_started = 0.0
        self._outages = 0
        self._dropped = 0
        self._closing = False

    def __repr__(self) -> str:
        return f"RedisBroker({self.safe_url!r})"

    @property
    def safe_url(self) -> str:
        """The URL without its password, for logs."""
        url = URL(self.url)
        return str(url.with_password("***")) if url.password else self.url

    @property
    def outages(self) -> int:
        """Outages since start: each counts once, however many connections broke."""
        return self._outages

    @property
    def connected(self) -> bool:
        return self._pubsub is not None and not self._down

    # -- lifecycle -----------------------------------------------------------------

    async def start(self, deliver: Deliver) -> None:
        if self._deliver is not None:
            raise RuntimeError(f"{self!r} was already started; use one broker per application")
        self._deliver = deliver
        # No retries inside redis-py: a broken connection surfaces here at once
        # and this broker reconnects with its own backoff and logging.
        no_retry = Retry(NoBackoff(), 0)
        pool = BlockingConnectionPool.from_url(
            self.url,
            max_connections=self.max_connections,
            timeout=self.pool_timeout,
            retry=no_retry,
            socket_connect_timeout=self.connect_timeout,
        )
        self._client = Redis(connection_pool=pool, retry=no_retry)
        self._client.auto_close_connection_pool = True  # as Redis.from_pool does
        self._history.bind(self._client)
        self._presence.bind(self._client)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._receive_forever(), name="aiohttp_spry redis subscriber"),
            loop.create_task(self._publish_forever(), name="aiohttp_spry redis publisher"),
            loop.create_task(self._sync_forever(), name="aiohttp_spry redis subscriptions"),
            loop.create_task(self._presence_forever(), name="aiohttp_spry redis presence"),
        ]

    async def close(self) -> None:
        # A clean shutdown: this process's sessions leave at once, not at expiry.
        if self._presence.present and self._client is not None and not self._down:
            with contextlib.suppress(*_LOST):
                await asyncio.wait_for(self._leave_all(self._client), _CLOSE_WAIT)
        self._closing = True
        # Close the connections first: an operation stuck on one fails at once.
        await self._drop_pubsub(self._pubsub)
        if self._client is not None:
            with contextlib.suppress(*_LOST):
                await self._client.connection_pool.disconnect()
        self._changed.set()
        self._has_pending.set()
        pending = set(self._tasks)
        # redis-py's own timeouts can swallow a cancellation on Python < 3.12,
        # so cancel again (the loops also stop on _closing) and never wait forever.
        for _ in range(_CLOSE_ATTEMPTS):
            if not pending:
                break
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=_CLOSE_WAIT)
        if pending:
            logger.warning("Redis broker tasks did not stop: %s", [t.get_name() for t in pending])
        self._tasks = []
        if self._pending or self._history.queue:
            logger.warning(
                "Redis broker closing with %d unsent message(s): %s",
                len(self._pending) + len(self._history.queue),
                self.safe_url,
            )
            self._pending.clear()
            self._history.fail_all("the Redis broker closed before Redis had it")
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        self._release_waiters()
        self._deliver = None

    def _release_waiters(self) -> None:
        """Let every ``subscribe()`` waiting for a confirmation return now."""
        for waiters in self._waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
        self._waiters.clear()

    # -- the broker contract ---------------------------------------------------------

    def _channel(self, topic: str) -> bytes:
        return self.channel_prefix + topic.encode()

    async def subscribe(self, topic: str) -> None:
        await self._subscribe_channel(self._channel(topic))

    async def _subscribe_channel(self, channel: bytes) -> None:
        self._wanted.add(channel)
        if channel in self._confirmed:
            return
        self._changed.set()
        if Link.SUBSCRIBER in self._down or self._closing:
            return  # restored on reconnect; local delivery works meanwhile
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(channel, []).append(waiter)
        try:
            await asyncio.wait_for(waiter, self.subscribe_timeout)
        except asyncio.TimeoutError:
            logger.debug("Redis did not confirm %r within %ss", channel, self.subscribe_timeout)
        finally:
            waiters = self._waiters.get(channel)
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self._waiters[channel]

    def unsubscribe(self, topic: str) -> None:
        self._wanted.discard(self._channel(topic))
        self._changed.set()

    def publish(self, topic: str, payload: bytes, binary: bool) -> None:
        pending = self._pending
        if len(pending) >= self.max_pending:
            pending.popleft()
            self._dropped += 1
        pending.append(
            (self._channel(topic), self._node + (_BINARY if binary else _TEXT) + payload)
        )
        self._has_pending.set()

    # -- history (:mod:`.redis_history`) -------------------------------------------

    def attach(self, listener: Listener, rules: HistoryRules) -> None:
        self._listener = listener
        self._rules = rules if rules else None
        self._routing = self._rules is not None or bool(self._presence.watched)

    def publish_positioned(
        self, topic: str, message: Stored, msgid: str, policy: HistoryPolicy, *, ack: bool
    ) -> asyncio.Future[Position] | None:
        future, dropped = self._history.enqueue(topic, message, msgid, policy, ack)
        if dropped:
            self._dropped += 1
        self._has_pending.set()
        return future

    async def read_history(
        self, topic: str, since: Position | None, policy: HistoryPolicy
    ) -> HistoryRead:
        if self._client is None:
            raise ConnectionError(f"{self!r} is not started")
        return await self._history.read(self._client, topic, since, policy)

    # -- presence (:mod:`.redis_presence`) --------------------------------------------

    def _reachable(self) -> Redis | None:
        return None if self._client is None or self._down or self._closing else self._client

    async def presence_join(self, topic: str, id: str, info: Mapping[str, Any]) -> None:
        await self._presence.join(self._reachable(), topic, id, info)

    async def presence_leave(self, topic: str, id: str) -> None:
        await self._presence.leave(self._reachable(), topic, id)

    async def presence(self, topic: str) -> dict[str, Mapping[str, Any]]:
        if self._client is None:
            raise ConnectionError(f"{self!r} is not started")
        return await self._presence.members(self._client, topic)

    async def presence_count(self, topic: str) -> int:
        if self._client is None:
            raise ConnectionError(f"{self!r} is not started")
        return await self._presence.count(self._client, topic)

    async def watch_presence(self, topic: str) -> None:
        self._presence.watched.add(topic)
        self._routing = self._listener is not None
        await self._subscribe_channel(self._presence.channel(topic))

    def unwatch_presence(self, topic: str) -> None:
        self._presence.watched.discard(topic)
        self._routing = self._rules is not None or bool(self._presence.watched)
        self._wanted.discard(self._presence.channel(topic))
        self._changed.set()

    async def _presence_forever(self) -> None:
        """Refresh this process's present sessions; prune expired ones where we look."""
        presence = self._presence
        while not self._closing:
            await asyncio.sleep(self.presence_refresh)
            if self._down or self._client is None:
                continue
            for topic in {*presence.present, *presence.watched}:
                try:
                    await presence.refresh(self._client, topic)
                except asyncio.CancelledError:
                    raise
                except _LOST as error:
                    logger.debug("Redis presence refresh of %r failed: %s", topic, error)
                    break
                except Exception:
                    logger.exception("Redis presence refresh of %r failed", topic)

    async def _leave_all(self, client: Redis) -> None:
        async with client.pipeline(transaction=False) as pipe:
            await self._presence.leave_all(pipe)
            await pipe.execute()

    # -- connections ---------------------------------------------------------------

    def _lost(self, part: Link, error: BaseException) -> None:
        """A connection broke: one WARNING per outage, DEBUG for the rest.

        Any error counts, not only a network one: the outage (and its length)
        starts with the first, whichever it was.
        """
        if not self._down:
            self._outage_started = asyncio.get_running_loop().time()
            self._outages += 1
            self._dropped = 0
            logger.warning(
                "Redis broker lost its %s connection to %s (%s: %s); local delivery "
                "continues, reconnecting with backoff",
                part.value,
                self.safe_url,
                type(error).__name__,
                error,
                exc_info=None if isinstance(error, _LOST) else error,
            )
        else:
            logger.debug(
                "Redis broker %s still down: %s: %s", part.value, type(error).__name__, error
            )
        self._down.add(part)
        if part is Link.SUBSCRIBER:
            self._release_waiters()  # their subscriptions are restored on reconnect

    def _back(self, part: Link) -> None:
        if part not in self._down:
            return
        self._down.discard(part)
        if not self._down:
            took = asyncio.get_running_loop().time() - self._outage_started
            logger.warning(
                "Redis broker reconnected to %s after %.1fs; %d subscription(s) restored, "
                "%d message(s) published meanwhile were dropped",
                self.safe_url,
                took,
                len(self._wanted),
                self._dropped,
            )

    async def _drop_pubsub(self, pubsub: PubSub | None) -> None:
        if pubsub is self._pubsub:
            self._pubsub = None
        self._sent.clear()
        self._confirmed.clear()
        if pubsub is not None:
            with contextlib.suppress(*_LOST):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _receive_forever(self) -> None:
        """Hold the subscriber connection: read messages, reconnect when it breaks."""
        assert self._client is not None
        client = self._client
        # A channel of this node's own keeps the connection subscribed (so read,
        # and an outage noticed) even while no topic has a local subscriber.
        liveness = self.channel_prefix + b"_node:" + self._node.hex().encode()
        attempt = 0
        while not self._closing:
            pubsub = client.pubsub()
            try:
                self._sent = set(self._wanted)
                await pubsub.subscribe(liveness, *self._sent)
                # Only now: a second task using a PubSub that is still
                # connecting would make it open a second connection.
                self._pubsub = pubsub
                # Topics joined or left while this connection was being made.
                self._changed.set()
                while not self._closing:
                    message = await pubsub.get_message(timeout=None)
                    if message is None:
                        continue
                    kind = message["type"]  # redis-py gives the type as str
                    if kind == "message":
                        self._on_message(message["channel"], message["data"])
                    elif kind == "subscribe":
                        self._confirm(message["channel"])
                        if attempt:
                            attempt = 0
                            self._back(Link.SUBSCRIBER)
                    elif kind == "unsubscribe":
                        self._confirmed.discard(message["channel"])
            except asyncio.CancelledError:
                await self._drop_pubsub(pubsub)
                raise
            except Exception as error:  # a network error, or anything else: reconnect
                self._lost(Link.SUBSCRIBER, error)
            await self._drop_pubsub(pubsub)
            # The publisher's pooled connections died with this one: drop them
            # too, or its next publish would fail on a dead socket after Redis
            # is back.
            with contextlib.suppress(*_LOST):
                await client.connection_pool.disconnect()
            await asyncio.sleep(self._backoff.compute(attempt))
            attempt += 1

    def _on_message(self, channel: bytes, data: bytes) -> None:
        # Only an application with history rules or watched presence pays for this.
        if self._routing:
            rest = channel[len(self.channel_prefix) :]
            try:
                assert self._listener is not None
                if rest[:3] == PRESENCE_MARK:
                    self._listener.presence_changed(RedisPresence.event(rest[3:].decode(), data))
                    return
                if self._rules is not None:
                    topic = rest.decode()
                    if self._rules.policy(topic) is not None:
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
        topic = channel[len(self.channel_prefix) :].decode()
        binary = data[_NODE_BYTES : _NODE_BYTES + 1] == _BINARY
        self._deliver(topic, data[_NODE_BYTES + 1 :], binary)

    def _confirm(self, channel: bytes) -> None:
        self._confirmed.add(channel)
        for waiter in self._waiters.pop(channel, ()):
            if not waiter.done():
                waiter.set_result(None)
        if self._rules is not None and self._listener is not None:
            topic = channel[len(self.channel_prefix) :].decode(errors="replace")
            if self._rules.policy(topic) is not None:
                # Whatever passed while this channel was not subscribed is read
                # from the history (nothing, on a first subscription).
                self._listener.resync(topic)

    async def _sync_forever(self) -> None:
        """Tell the subscriber connection what local subscribers want, in order."""
        while not self._closing:
            await self._changed.wait()
            self._changed.clear()
            pubsub = self._pubsub
            if pubsub is None:
                continue  # the reconnect subscribes to everything wanted
            join = self._wanted - self._sent
            leave = self._sent - self._wanted
            try:
                if join:
                    self._sent |= join
                    await pubsub.subscribe(*join)
                if leave:
                    self._sent -= leave
                    await pubsub.unsubscribe(*leave)
            except asyncio.CancelledError:
                raise
            except _LOST as error:
                # The receiving side sees the same break and reconnects.
                logger.debug("Redis broker could not (un)subscribe: %s", error)
            except Exception:
                logger.exception("Redis broker could not (un)subscribe: %s", self.safe_url)

    async def _publish_forever(self) -> None:
        """Send pending messages in order, in pipelined batches; wait out outages.

        Messages of topics without history and with history wait apart, so the
        first kind goes exactly the way it always did.
        """
        assert self._client is not None
        client = self._client
        pending, positioned = self._pending, self._history.queue
        while not self._closing:
            await self._has_pending.wait()
            if not (pending or positioned) or self._closing:
                self._has_pending.clear()
                continue
            if self._down:
                # Usually the subscriber connection notices an outage first:
                # hold the messages (bounded) until Redis answers again.
                await self._wait_until_reachable(client)
                if self._closing:
                    break
            if pending:
                await self._publish_batch(client, pending)
            if positioned and not self._down:
                lost = await self._history.send_batch(client)
                if lost is not None:
                    self._lost(Link.PUBLISHER, lost)

    async def _publish_batch(self, client: Redis, pending: deque[tuple[bytes, bytes]]) -> None:
        batch = [pending.popleft() for _ in range(min(_BATCH, len(pending)))]
        try:
            async with client.pipeline(transaction=False) as pipe:
                for channel, data in batch:
                    pipe.publish(channel, data)
                await pipe.execute()
        except asyncio.CancelledError:
            raise
        except _LOST as error:
            # At most once: part of the batch may have gone out; resending
            # could deliver it twice.
            self._lost(Link.PUBLISHER, error)
            self._dropped += len(batch)
        except Exception:
            logger.exception(
                "Redis broker dropped %d message(s) it could not publish: %s",
                len(batch),
                self.safe_url,
            )

    async def _wait_until_reachable(self, client: Redis) -> None:
        attempt = 0
        while not self._closing:
            try:
                await client.ping()
            except _LOST as error:
                self._lost(Link.PUBLISHER, error)
                await asyncio.sleep(self._backoff.compute(attempt))
                attempt += 1
                continue
            self._back(Link.PUBLISHER)
            return
