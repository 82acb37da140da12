"""One Redis node's links for a broker: its subscriber, its publisher, what waits for them.

A :class:`NodeLink` holds one subscriber connection to one node (classic
``SUBSCRIBE`` on a single Redis, ``SSUBSCRIBE`` on a cluster shard) and a
publisher that sends that node's pending messages in order, in pipelined
batches. It reconnects by itself with backoff, restores its subscriptions, and
logs one WARNING when its outage starts and one when it ends. The single-node
broker (:mod:`.redis`) has one; the cluster broker (:mod:`.cluster`) one per
shard, so a shard that is down never holds up the others.

What a node refuses because a slot moved (``MOVED``; ``ASK``, ``TRYAGAIN`` and
``CLUSTERDOWN`` while it moves) is not an outage: subscriptions are handed to
the owner (:meth:`LinkOwner.moved`) and messages wait for it
(:meth:`LinkOwner.reroute`), in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections import deque
from typing import Final, Protocol

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.backoff import AbstractBackoff
from redis.crc import key_slot
from redis.exceptions import MovedError

from ..log import pubsub_logger as logger
from .envelope import Stored
from .history import HistoryPolicy
from .positions import Position
from .redis_errors import LOST, MOVING
from .redis_history import Positioned, RedisHistory
from .redis_names import RedisNames

__all__ = ["Link", "LinkOwner", "NodeLink", "Pending"]

_BATCH: Final = 512
_CLOSE_ATTEMPTS: Final = 5
_CLOSE_WAIT: Final = 1.0
#: How long messages a moving slot refused (ASK, TRYAGAIN) wait before another try.
_MOVING_WAIT: Final = 0.05

#: A message of a topic without history waiting for Redis: (channel, data).
Pending = tuple[bytes, bytes]


class Link(enum.Enum):
    """A node's two connections, each of which can be down."""

    SUBSCRIBER = "subscriber"
    PUBLISHER = "publisher"


class LinkOwner(Protocol):
    """The broker a link works for: it decodes messages and knows who owns which slot."""

    def on_message(self, channel: bytes, data: bytes) -> None:
        """A message arrived on ``channel``."""

    def on_confirm(self, channel: bytes) -> None:
        """The node confirmed the subscription of ``channel`` (first, or again)."""

    async def moved(self, link: NodeLink) -> None:
        """The node refused or dropped a subscription because a slot moved: read the
        topology again and hand every channel to its owner."""

    async def reroute(
        self, link: NodeLink, plain: list[Pending], positioned: list[Positioned]
    ) -> None:
        """The node answered ``MOVED`` to these messages (not applied): send them to
        the slot's owner, first in its line."""


class NodeLink:
    """The subscriber and publisher connections of one broker to one Redis node.

    Args:
        owner: the broker.
        label: how logs name the node (a URL without its password).
        sharded: shard channels (``SSUBSCRIBE``) rather than classic ones.
        liveness: a channel of this process's own, always subscribed.
        names: how the broker names channels and keys.
        backoff: the reconnect backoff.
        max_pending: the most messages without history kept while the node is
            unreachable (oldest dropped first).
        subscribe_timeout: the longest :meth:`subscribe` waits for a confirmation.
    """

    def __init__(
        self,
        owner: LinkOwner,
        *,
        label: str,
        names: RedisNames,
        liveness: bytes,
        backoff: AbstractBackoff,
        max_pending: int,
        subscribe_timeout: float,
    ) -> None:
        self.label = label
        self.sharded = sharded = names.sharded
        self.liveness = liveness
        #: This node's messages of topics with history, waiting for it.
        self.history = RedisHistory(names, max_pending)
        self._client: Redis | None = None
        self.max_pending = max_pending
        self.subscribe_timeout = subscribe_timeout
        self._owner = owner
        self._backoff = backoff
        self._pubsub: PubSub | None = None
        self._tasks: list[asyncio.Task[None]] = []
        # Channels: wanted by local subscribers / told to the current
        # connection / confirmed by Redis on it.
        self._wanted: set[bytes] = set()
        self._sent: set[bytes] = set()
        self._confirmed: set[bytes] = set()
        self._waiters: dict[bytes, list[asyncio.Future[None]]] = {}
        self._changed = asyncio.Event()
        self._pending: deque[Pending] = deque()
        self._has_pending = asyncio.Event()
        # Outage bookkeeping: which connections are down, since when, losses.
        self._down: set[Link] = set()
        self._outage_started = 0.0
        self._outages = 0
        self._dropped = 0
        self._closing = False
        if sharded:
            self._subscribe, self._unsubscribe = "ssubscribe", "sunsubscribe"
        else:
            self._subscribe, self._unsubscribe = "subscribe", "unsubscribe"

    def __repr__(self) -> str:
        return f"NodeLink({self.label!r})"

    @property
    def outages(self) -> int:
        """Outages since start: each counts once, however many connections broke."""
        return self._outages

    @property
    def up(self) -> bool:
        """Whether the subscriber connection is up and nothing is known down."""
        return self._pubsub is not None and not self._down

    @property
    def down(self) -> bool:
        """Whether one of the connections is known to be down."""
        return bool(self._down)

    @property
    def wanted(self) -> frozenset[bytes]:
        """The channels this link subscribes (or will, once connected)."""
        return frozenset(self._wanted)

    @property
    def unsent(self) -> int:
        """Messages still waiting for this node."""
        return len(self._pending) + len(self.history.queue)

    # -- lifecycle -----------------------------------------------------------------

    @property
    def client(self) -> Redis:
        """The node's client (its own bounded pool)."""
        if self._client is None:
            raise RuntimeError(f"{self!r} is not started")
        return self._client

    def start(self, client: Redis) -> None:
        """Connect with ``client`` (the link closes it) and keep connected."""
        self._client = client
        self.history.bind(client)
        loop = asyncio.get_running_loop()
        name = f"aiohttp_spry redis {self.label}"
        self._tasks = [
            loop.create_task(self._receive_forever(), name=f"{name} subscriber"),
            loop.create_task(self._publish_forever(), name=f"{name} publisher"),
            loop.create_task(self._sync_forever(), name=f"{name} subscriptions"),
        ]

    async def close(self) -> None:
        """Close the connections, stop the tasks; unsent messages are dropped (logged)."""
        self._closing = True
        # Close the connections first: an operation stuck on one fails at once.
        await self._drop_pubsub(self._pubsub)
        client = self._client
        if client is not None:
            with contextlib.suppress(*LOST):
                await client.connection_pool.disconnect()
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
        if self.unsent:
            logger.warning(
                "Redis broker closing with %d unsent message(s): %s", self.unsent, self.label
            )
            self._pending.clear()
            self.history.fail_all("the Redis broker closed before Redis had it")
        if client is not None:
            await client.aclose()
        self._release_waiters()

    def _release_waiters(self, channels: set[bytes] | None = None) -> None:
        """Let every ``subscribe()`` waiting (for ``channels``) return now."""
        for channel in list(self._waiters) if channels is None else channels:
            for waiter in self._waiters.pop(channel, ()):
                if not waiter.done():
                    waiter.set_result(None)

    # -- subscriptions --------------------------------------------------------------

    async def subscribe(self, channel: bytes) -> None:
        """Subscribe ``channel``; return once the node confirmed it (or
        ``subscribe_timeout`` passed, or the node is down: restored on reconnect)."""
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

    def want(self, channel: bytes) -> None:
        """Subscribe ``channel`` without waiting (it moved here from another shard)."""
        if channel not in self._wanted:
            self._wanted.add(channel)
            self._changed.set()

    def unsubscribe(self, channel: bytes) -> None:
        """Stop receiving ``channel``. Never blocks."""
        self._wanted.discard(channel)
        self._release_waiters({channel})
        self._changed.set()

    def set_liveness(self, channel: bytes) -> None:
        """Use another liveness channel (its slot moved to another shard)."""
        if channel != self.liveness:
            self.liveness = channel
            self._changed.set()

    # -- publishing -----------------------------------------------------------------

    def publish(self, channel: bytes, data: bytes) -> None:
        """Queue a message for this node. Never blocks."""
        pending = self._pending
        if len(pending) >= self.max_pending:
            pending.popleft()
            self._dropped += 1
        pending.append((channel, data))
        self._has_pending.set()

    def publish_positioned(
        self, topic: str, message: Stored, msgid: str, policy: HistoryPolicy, *, ack: bool
    ) -> asyncio.Future[Position] | None:
        """Queue a message of a topic with history for this node. Never blocks."""
        future, dropped = self.history.enqueue(topic, message, msgid, policy, ack)
        if dropped:
            self._dropped += 1
        self._has_pending.set()
        return future

    def put(self, plain: list[Pending], positioned: list[Positioned], *, first: bool) -> None:
        """Queue messages that waited elsewhere, in their order: ``first`` in line (another
        node refused them) or last (they waited for the topology)."""
        if first:
            self._pending.extendleft(reversed(plain))
            self.history.queue.extendleft(reversed(positioned))
        else:
            self._pending.extend(plain)
            self.history.queue.extend(positioned)
        if plain or positioned:
            self._has_pending.set()

    def take_all(self) -> tuple[list[Pending], list[Positioned]]:
        """Every waiting message, in order (this node is leaving the cluster)."""
        plain, positioned = list(self._pending), list(self.history.queue)
        self._pending.clear()
        self.history.queue.clear()
        return plain, positioned

    # -- outages ----------------------------------------------------------------------

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
                self.label,
                type(error).__name__,
                error,
                exc_info=None if isinstance(error, LOST) else error,
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
                self.label,
                took,
                len(self._wanted),
                self._dropped,
            )

    # -- the subscriber ---------------------------------------------------------------

    async def _drop_pubsub(self, pubsub: PubSub | None) -> None:
        if pubsub is self._pubsub:
            self._pubsub = None
        self._sent.clear()
        self._confirmed.clear()
        if pubsub is not None:
            with contextlib.suppress(*LOST):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _send_subscribe(self, pubsub: PubSub, channels: set[bytes]) -> None:
        if not channels:
            return
        if not self.sharded:
            await pubsub.subscribe(*channels)
            return
        # One SSUBSCRIBE per slot: the channels of one command must share a slot.
        by_slot: dict[int, list[bytes]] = {}
        for channel in channels:
            by_slot.setdefault(key_slot(channel), []).append(channel)
        for group in by_slot.values():
            await pubsub.ssubscribe(*group)

    async def _send_unsubscribe(self, pubsub: PubSub, channels: set[bytes]) -> None:
        if not self.sharded:
            await pubsub.unsubscribe(*channels)
            return
        for channel in channels:
            await pubsub.sunsubscribe(channel)

    async def _receive_forever(self) -> None:
        """Hold the subscriber connection: read messages, reconnect when it breaks."""
        client = self.client
        attempt = 0
        message_kind = "smessage" if self.sharded else "message"
        while not self._closing:
            pubsub = client.pubsub()
            try:
                self._sent = {self.liveness, *self._wanted}
                await self._send_subscribe(pubsub, self._sent)
                # Only now: a second task using a PubSub that is still
                # connecting would make it open a second connection.
                self._pubsub = pubsub
                # Topics joined or left while this connection was being made.
                self._changed.set()
                while not self._closing:
                    try:
                        message = await pubsub.get_message(timeout=None)
                    except MovedError as moved:
                        # A subscription sent to a node that no longer owns its slot.
                        self._sent = {c for c in self._sent if key_slot(c) != moved.slot_id}
                        await self._owner.moved(self)
                        self._changed.set()
                        continue
                    if message is None:
                        continue
                    kind = message["type"]  # redis-py gives the type as str
                    if kind == message_kind:
                        self._owner.on_message(message["channel"], message["data"])
                    elif kind == self._subscribe:
                        self._confirm(message["channel"])
                        if attempt:
                            attempt = 0
                            self._back(Link.SUBSCRIBER)
                    elif kind == self._unsubscribe:
                        await self._unsubscribed(message["channel"])
            except asyncio.CancelledError:
                await self._drop_pubsub(pubsub)
                raise
            except Exception as error:  # a network error, or anything else: reconnect
                self._lost(Link.SUBSCRIBER, error)
            await self._drop_pubsub(pubsub)
            # The publisher's pooled connections died with this one: drop them
            # too, or its next publish would fail on a dead socket after Redis
            # is back.
            with contextlib.suppress(*LOST):
                await client.connection_pool.disconnect()
            await asyncio.sleep(self._backoff.compute(attempt))
            attempt += 1

    def _confirm(self, channel: bytes) -> None:
        self._confirmed.add(channel)
        for waiter in self._waiters.pop(channel, ()):
            if not waiter.done():
                waiter.set_result(None)
        if channel != self.liveness:
            self._owner.on_confirm(channel)

    async def _unsubscribed(self, channel: bytes) -> None:
        self._confirmed.discard(channel)
        if channel in self._sent and (channel in self._wanted or channel == self.liveness):
            # Not asked for: the node gave the channel's slot to another shard
            # (Redis unsubscribes shard channels of a slot it lost).
            self._sent.discard(channel)
            await self._owner.moved(self)
            self._changed.set()

    async def _sync_forever(self) -> None:
        """Tell the subscriber connection what local subscribers want, in order."""
        while not self._closing:
            await self._changed.wait()
            self._changed.clear()
            pubsub = self._pubsub
            if pubsub is None:
                continue  # the reconnect subscribes to everything wanted
            wanted = {self.liveness, *self._wanted}
            join = wanted - self._sent
            leave = self._sent - wanted
            try:
                if join:
                    self._sent |= join
                    await self._send_subscribe(pubsub, join)
                if leave:
                    self._sent -= leave
                    await self._send_unsubscribe(pubsub, leave)
            except asyncio.CancelledError:
                raise
            except LOST as error:
                # The receiving side sees the same break and reconnects.
                logger.debug("Redis broker could not (un)subscribe: %s", error)
            except Exception:
                logger.exception("Redis broker could not (un)subscribe: %s", self.label)

    # -- the publisher ----------------------------------------------------------------

    async def _publish_forever(self) -> None:
        """Send pending messages in order, in pipelined batches; wait out outages.

        Messages of topics without history and with history wait apart, so the
        first kind goes exactly the way it always did.
        """
        client = self.client
        pending, positioned = self._pending, self.history.queue
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
            moving = False
            if pending:
                moving = await self._publish_batch(client, pending)
            if positioned and not self._down:
                outcome = await self.history.send_batch(client)
                if outcome.lost is not None:
                    self._lost(Link.PUBLISHER, outcome.lost)
                if outcome.moved:
                    await self._owner.reroute(self, [], list(outcome.moved))
                moving = moving or outcome.moving
            if moving:
                await asyncio.sleep(_MOVING_WAIT)

    async def _publish_batch(self, client: Redis, pending: deque[Pending]) -> bool:
        """Send one batch; returns whether part of it waits because its slot is moving."""
        batch = [pending.popleft() for _ in range(min(_BATCH, len(pending)))]
        command = "SPUBLISH" if self.sharded else "PUBLISH"
        try:
            async with client.pipeline(transaction=False) as pipe:
                for channel, data in batch:
                    pipe.execute_command(command, channel, data)
                replies = await pipe.execute(raise_on_error=False)
        except asyncio.CancelledError:
            raise
        except LOST as error:
            # At most once: part of the batch may have gone out; resending
            # could deliver it twice.
            self._lost(Link.PUBLISHER, error)
            self._dropped += len(batch)
            return False
        except Exception:
            logger.exception(
                "Redis broker dropped %d message(s) it could not publish: %s",
                len(batch),
                self.label,
            )
            return False
        moved: list[Pending] = []
        waiting: list[Pending] = []
        for item, reply in zip(batch, replies, strict=True):
            if isinstance(reply, MovedError):
                moved.append(item)  # not published: safe to send to the owner
            elif isinstance(reply, MOVING):
                waiting.append(item)
            elif isinstance(reply, Exception):
                self._dropped += 1
                logger.error("Redis refused a message on %r: %s", item[0], reply)
        if waiting:
            pending.extendleft(reversed(waiting))
        if moved:
            await self._owner.reroute(self, moved, [])
        return bool(waiting)

    async def _wait_until_reachable(self, client: Redis) -> None:
        attempt = 0
        while not self._closing:
            try:
                await client.ping()
            except LOST as error:
                self._lost(Link.PUBLISHER, error)
                await asyncio.sleep(self._backoff.compute(attempt))
                attempt += 1
                continue
            self._back(Link.PUBLISHER)
            return
