"""Local fan-out: which sessions of this process subscribe to which topics, and delivery to them.

A published message is encoded once into one WebSocket frame, and that frame is
written synchronously to the transport of every subscriber that keeps up: no
task, no coroutine and no copy per subscriber. A subscriber whose send buffer is
over its high-water mark gets the slow path instead: its own bounded queue,
drained by one task that waits for the peer; when the queue overflows, the
session is closed with 1008 and logged. The others are never delayed by it.

The fan-out owns one :class:`Subscription` per subscribing session: its topics,
its transport and its queue. The session itself holds no pub/sub state.
Topics with history go through :class:`~.recovery.Recovery` (positions,
replay-then-live) and presence through :class:`~.presence.PresenceHub`; both
exist only when the application uses them, and a topic without history takes
the same path as before, after one attribute check.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
from collections import deque
from collections.abc import Coroutine, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from aiohttp import WSCloseCode, WSMsgType, web

from ..log import pubsub_logger as logger
from .broker import Broker
from .history import HistoryRules
from .positions import Position, SubscribeResult
from .presence import PresenceEvent, PresenceFormat, PresenceHub
from .recovery import Recovery, RecoveryCounters, close_quietly

if TYPE_CHECKING:
    from ..websocket.session import WebSocket
    from .envelope import Kind

_TEXT: Final = int(WSMsgType.TEXT)
_BINARY: Final = int(WSMsgType.BINARY)
_PACK_16: Final = struct.Struct("!BBH").pack
_PACK_64: Final = struct.Struct("!BBQ").pack


def encode_frame(payload: bytes, binary: bool) -> bytes:
    """One unmasked, unfragmented server frame (RFC 6455 §5.2) carrying ``payload``.

    Sent uncompressed even on a permessage-deflate session, which RFC 7692 §6
    allows (RSV1 clear); the session's own compressor state is not touched.

    >>> encode_frame(b"hi", binary=False)
    b'\\x81\\x02hi'
    """
    first = 0x80 | (_BINARY if binary else _TEXT)
    size = len(payload)
    if size < 126:
        return bytes((first, size)) + payload
    if size < 65536:
        return _PACK_16(first, 126, size) + payload
    return _PACK_64(first, 127, size) + payload


def encode_message(data: Any) -> tuple[bytes, bool]:
    """``str`` → UTF-8 text, ``bytes``-like → binary, anything else → JSON text.

    >>> encode_message({"a": 1})
    (b'{"a": 1}', False)

    Raises:
        TypeError: ``data`` is not JSON-serializable.
    """
    if type(data) is str:
        return data.encode(), False
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data), True
    return json.dumps(data).encode(), False


def check_topic(topic: object) -> str:
    """Return ``topic`` if it is a non-empty ``str``.

    Raises:
        TypeError: ``topic`` is not a ``str``.
        ValueError: ``topic`` is empty.
    """
    if not isinstance(topic, str):
        raise TypeError(f"a topic is a str, got {type(topic).__name__}: {topic!r}")
    if not topic:
        raise ValueError("a topic is a non-empty str, got ''")
    return topic


class Subscription:
    """One session's pub/sub state, owned by the :class:`Fanout`.

    Attributes:
        ws: the session.
        topics: the topics it subscribes to.
        transport: its connection, written to directly on the fast path.
        high_water: the transport's high-water mark; past it, the slow path.
        backlog: published messages waiting for a slow peer (payload, binary).
        drain: the task sending ``backlog``, while there is one.
    """

    __slots__ = ("backlog", "drain", "high_water", "topics", "transport", "ws")

    def __init__(self, ws: WebSocket) -> None:
        transport = ws.event.request.transport
        assert transport is not None, "a session has a transport"
        self.ws = ws
        self.topics: set[str] = set()
        self.transport = transport
        self.high_water = transport.get_write_buffer_limits()[1]
        self.backlog: deque[tuple[bytes, bool]] = deque()
        self.drain: asyncio.Task[None] | None = None

    @property
    def writable(self) -> bool:
        """Whether a frame may still be written to this session."""
        return not self.ws.closed and not self.transport.is_closing()

    def stop_draining(self) -> None:
        self.backlog.clear()
        if self.drain is not None:
            self.drain.cancel()
            self.drain = None


class FanoutCounters:
    """What the fan-out counts for metrics (plain ints; only with metrics enabled).

    Attributes:
        published: messages published by this process (``spry.publish``, ``ws.publish``).
        delivered: local deliveries, written or queued, of messages published here
            or received from the broker.
        slow_closes: subscribers closed with 1008 for falling ``max_queued`` behind.
    """

    __slots__ = ("delivered", "published", "slow_closes")

    def __init__(self) -> None:
        self.published = 0
        self.delivered = 0
        self.slow_closes = 0


class Fanout:
    """The topics of one application's sessions, and delivery to them.

    Attributes:
        broker: carries messages to and from other processes.
        max_queued: the most published messages one slow subscriber may have
            waiting; one more closes it with 1008.
    """

    __slots__ = (
        "_by_session",
        "_counters",
        "_presence",
        "_recovery",
        "_rules",
        "_tasks",
        "_topics",
        "broker",
        "history",
        "max_queued",
    )

    def __init__(
        self, broker: Broker, max_queued: int, history: HistoryRules | None = None
    ) -> None:
        self.broker = broker
        self.max_queued = max_queued
        self._topics: dict[str, set[Subscription]] = {}
        self._by_session: dict[WebSocket, Subscription] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.history = history if history is not None else HistoryRules()
        # None unless the application keeps history (set at start): the hot
        # path checks only this.
        self._rules: HistoryRules | None = None
        self._recovery: Recovery | None = None
        self._presence: PresenceHub | None = None
        self._counters: FanoutCounters | None = None

    def count_into(self, counters: FanoutCounters) -> None:
        """Count publications, deliveries and slow closes from now on (metrics)."""
        self._counters = counters

    # -- lifecycle (aiohttp signals) ---------------------------------------------

    async def start(self, app: web.Application) -> None:
        if self.history:
            self._rules = self.history
            self._recovery = Recovery(self, self.broker)
        if self.broker.supports_history:
            self.broker.attach(self, self.history)
        elif self.history:
            raise RuntimeError(
                f"the application keeps history ({self.history.rules}) but its broker "
                f"{self.broker!r} cannot: use MemoryBroker or RedisBroker"
            )
        await self.broker.start(self.deliver)

    async def close(self, app: web.Application) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
        await self.broker.close()

    # -- subscriptions ---------------------------------------------------------

    def subscribers(self, topic: str) -> frozenset[WebSocket]:
        """The local sessions subscribed to ``topic``."""
        return frozenset(s.ws for s in self._topics.get(topic, ()))

    def topics_of(self, ws: WebSocket) -> frozenset[str]:
        """The topics ``ws`` subscribes to."""
        subscription = self._by_session.get(ws)
        return frozenset(subscription.topics) if subscription is not None else frozenset()

    @property
    def topics(self) -> frozenset[str]:
        """The topics with at least one local subscriber."""
        return frozenset(self._topics)

    async def subscribe(
        self,
        ws: WebSocket,
        topic: str,
        *,
        since: Position | None = None,
        hold: bool = False,
        presence: Mapping[str, Any] | None = None,
        presence_events: PresenceFormat | None = None,
    ) -> SubscribeResult:
        """Add ``ws`` to ``topic``; return once the broker will deliver it too.

        For a topic with history, with the replay after ``since`` written
        first (see :class:`~.recovery.Recovery`); with ``hold``, nothing is
        written until :meth:`resume`.

        Raises:
            TypeError, ValueError: a bad topic, ``since`` or presence info, or
                ``since``/``hold`` for a topic without history.
        """
        check_topic(topic)
        policy = self._rules.policy(topic) if self._rules is not None else None
        if policy is None and (since is not None or hold):
            raise ValueError(
                f"topic {topic!r} keeps no history, so since= and hold= do not apply; "
                'declare one first, e.g. spry.history("room:", size=200, ttl=600)'
            )
        if since is not None and not isinstance(since, Position):
            raise TypeError(
                f"since= takes a Position (parse_position('EPOCH:OFFSET')), got {since!r}"
            )
        hub = self._presence_hub() if presence is not None or presence_events is not None else None
        if hub is not None and presence is not None:
            hub.check(presence)
        subscription = self._by_session.get(ws)
        if subscription is None:
            subscription = self._by_session[ws] = Subscription(ws)
        if policy is None:
            if topic not in subscription.topics:
                subscription.topics.add(topic)
                self._topics.setdefault(topic, set()).add(subscription)
            # Every joiner waits, not only the first: the broker returns once
            # messages from other processes will arrive.
            await self.broker.subscribe(topic)
            result = SubscribeResult(None, None)
        elif topic in subscription.topics:
            recovery = self._recovery
            assert recovery is not None
            result = SubscribeResult(None, recovery.position(topic))
        else:
            recovery = self._recovery
            assert recovery is not None
            subscription.topics.add(topic)
            self._topics.setdefault(topic, set())

            async def watch() -> None:
                # As a joiner, before any snapshot the session may take: the
                # events are buffered for it, and none falls between.
                if presence_events is not None and hub is not None:
                    await hub.watch(subscription, topic, presence_events)

            result = await recovery.subscribe(
                subscription, topic, policy, since, hold=True, before=watch
            )
            if presence is not None and hub is not None and self._still_in(subscription, topic):
                await hub.join(subscription, topic, presence)
            if not self._still_in(subscription, topic):
                if hub is not None:
                    hub.leave(subscription, topic)  # it left while joining
                return result
            if not hold:
                recovery.resume(subscription, topic)
            return result
        if hub is not None:
            if presence_events is not None:
                await hub.watch(subscription, topic, presence_events)
            if presence is not None:
                await hub.join(subscription, topic, presence)
            if not self._still_in(subscription, topic):
                hub.leave(subscription, topic)
        return result

    def _still_in(self, subscription: Subscription, topic: str) -> bool:
        return (
            self._by_session.get(subscription.ws) is subscription and topic in subscription.topics
        )

    def resume(self, ws: WebSocket, topic: str) -> int:
        """Deliver what a held subscription (``hold=True``) is owed, then live messages.

        Returns:
            How many frames were written or queued (0: nothing was held).
        """
        subscription = self._by_session.get(ws)
        if subscription is None or self._recovery is None:
            return 0
        return self._recovery.resume(subscription, topic)

    def _presence_hub(self) -> PresenceHub:
        if self._presence is None:
            self._presence = PresenceHub(self, self.broker)
        return self._presence

    def unsubscribe(self, ws: WebSocket, topic: str) -> None:
        check_topic(topic)
        subscription = self._by_session.get(ws)
        if subscription is not None and topic in subscription.topics:
            subscription.topics.discard(topic)
            self._leave(subscription, (topic,))

    def drop(self, ws: WebSocket) -> None:
        """The session ended: leave every topic and stop its queue."""
        subscription = self._by_session.pop(ws, None)
        if subscription is None:
            return  # never subscribed: nothing to leave
        subscription.stop_draining()
        topics, subscription.topics = subscription.topics, set()
        self._leave(subscription, topics)

    def _leave(self, subscription: Subscription, topics: Iterable[str]) -> None:
        recovery, hub = self._recovery, self._presence
        for topic in topics:
            if hub is not None:
                hub.leave(subscription, topic)
            subscribers = self._topics.get(topic)
            if subscribers is None:
                continue
            subscribers.discard(subscription)
            if recovery is not None:
                last = not subscribers
                recovery.leave(subscription, topic, last)
                if last and recovery.has_joiners(topic):
                    continue  # another session is still joining: keep the topic
            if not subscribers:
                del self._topics[topic]
                self.broker.unsubscribe(topic)

    # -- delivery --------------------------------------------------------------

    def publish(self, topic: str, data: Any, exclude: WebSocket | None = None) -> int:
        """Deliver ``data`` to the local subscribers of ``topic`` but ``exclude``,
        and hand it to the broker for the other processes.

        Returns:
            How many local sessions it was written or queued to (for a topic
            with history on a remote broker, 0: it is delivered once the
            broker has given it its position; see :meth:`publish_positioned`).

        Raises:
            TypeError: ``data`` is not ``str``, bytes or JSON-serializable (or
                bytes for a topic with history), or ``topic`` is not a ``str``.
            ValueError: ``topic`` is empty.
        """
        if self._rules is not None:
            policy = self._rules.policy(topic)
            if policy is not None:
                assert self._recovery is not None
                return self._recovery.publish(topic, data, exclude, policy)
        payload, binary = encode_message(data)
        subscribers = self._topics.get(topic)
        if subscribers is None:
            check_topic(topic)
            count = 0
        else:
            frame = encode_frame(payload, binary)
            count = self._fan_out(subscribers, frame, payload, binary, exclude)
        self.broker.publish(topic, payload, binary)
        if self._counters is not None:
            self._counters.published += 1
            self._counters.delivered += count
        return count

    async def publish_positioned(
        self, topic: str, data: Any, exclude: WebSocket | None = None
    ) -> Position:
        """Publish to a topic with history and return the position the broker gave it.

        Waits for the broker (for Redis: until Redis has the message, however
        long an outage lasts).

        Raises:
            ValueError: ``topic`` keeps no history.
            TypeError: as for :meth:`publish`.
        """
        check_topic(topic)
        policy = self._rules.policy(topic) if self._rules is not None else None
        if policy is None:
            raise ValueError(
                f"topic {topic!r} keeps no history, so its messages have no position; "
                'declare one first, e.g. spry.history("room:", size=200, ttl=600)'
            )
        assert self._recovery is not None
        assigned = self._recovery.publish_positioned(topic, data, exclude, policy)
        return assigned if isinstance(assigned, Position) else await assigned

    # -- the broker's listener (history and presence) ---------------------------------

    def deliver_positioned(
        self, topic: str, position: Position, kind: Kind, payload: bytes, msgid: str
    ) -> None:
        if self._recovery is not None:
            self._recovery.deliver_positioned(topic, position, kind, payload, msgid)

    def resync(self, topic: str) -> None:
        if self._recovery is not None:
            self._recovery.resync(topic)

    def presence_changed(self, event: PresenceEvent) -> None:
        if self._presence is not None:
            self._presence.changed(event)

    async def presence(self, topic: str) -> dict[str, Mapping[str, Any]]:
        """Every session present in ``topic``, in every process: ``{ws.id: info}``."""
        check_topic(topic)
        return await self.broker.presence(topic)

    async def presence_count(self, topic: str) -> int:
        """How many sessions are present in ``topic``, in every process."""
        check_topic(topic)
        return await self.broker.presence_count(topic)

    def history_stats(self) -> dict[str, int]:
        """Counters for metrics: recoveries (``recovered``, ``not_recovered``, ``replayed``,
        ``caught_up``, ``gaps_closed``) and ``present_here`` (presences this process holds).
        All 0 while the application uses neither history nor presence."""
        counters = self._recovery.counters if self._recovery is not None else RecoveryCounters()
        stats = counters.as_dict()
        stats["present_here"] = self._presence.present_here() if self._presence is not None else 0
        return stats

    def position(self, topic: str) -> Position | None:
        """The last position delivered in this process for ``topic`` (``None``: unknown)."""
        return self._recovery.position(topic) if self._recovery is not None else None

    async def read_position(self, topic: str) -> Position:
        """The latest position of a topic with history, asked of the broker.

        Raises:
            ValueError: ``topic`` keeps no history.
        """
        check_topic(topic)
        policy = self._rules.policy(topic) if self._rules is not None else None
        if policy is None:
            raise ValueError(f"topic {topic!r} keeps no history, so it has no position")
        return (await self.broker.read_history(topic, None, policy)).position

    # -- frames for recovery and presence ----------------------------------------------

    @staticmethod
    def frame(text: bytes) -> bytes:
        """The text frame carrying ``text``."""
        return encode_frame(text, False)

    def fan_out_frame(
        self, topic: str, frame: bytes, text: bytes, exclude: WebSocket | None
    ) -> int:
        """Write a text frame to the live local subscribers of ``topic`` but ``exclude``."""
        subscribers = self._topics.get(topic)
        return self._fan_out(subscribers, frame, text, False, exclude) if subscribers else 0

    def send_frame(self, subscription: Subscription, frame: bytes, text: bytes) -> int:
        """Write one text frame to one subscriber (its queue if it is slow)."""
        transport = subscription.transport
        if (
            subscription.drain is None
            and transport.get_write_buffer_size() + len(frame) <= subscription.high_water
            and not subscription.ws.closed
            and not transport.is_closing()
        ):
            transport.write(frame)
            return 1
        return self._enqueue(subscription, text, False)

    def send_or_hold(
        self, subscription: Subscription, topic: str, frame: bytes, text: bytes
    ) -> int:
        """Write a frame without a position (a presence event), or buffer it for a joiner."""
        if self._recovery is not None and self._recovery.hold_frame(
            subscription, topic, frame, text
        ):
            return 0
        return self.send_frame(subscription, frame, text)

    def go_live(self, subscription: Subscription, topic: str) -> None:
        """A joiner has had its replay: it gets live messages from now on."""
        if topic in subscription.topics and self._by_session.get(subscription.ws) is subscription:
            self._topics.setdefault(topic, set()).add(subscription)

    def overflow(self, subscription: Subscription) -> None:
        """Too much waits for this subscriber: close it with 1008."""
        if self._by_session.get(subscription.ws) is subscription and subscription.topics:
            self._overflow(subscription)

    def close_topic(self, topic: str, code: int, reason: str) -> int:
        """Take every local session out of ``topic`` and close it; return how many."""
        sessions = [s for s in self._by_session.values() if topic in s.topics]
        for subscription in sessions:
            subscription.topics.discard(topic)
            self._leave(subscription, (topic,))
            self._spawn(close_quietly(subscription.ws, code, reason))
        return len(sessions)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a task the fan-out cancels at close."""
        self._spawn(coro)

    def deliver(self, topic: str, payload: bytes, binary: bool) -> None:
        """A message another process published: deliver it to the local subscribers."""
        subscribers = self._topics.get(topic)
        if subscribers:
            count = self._fan_out(subscribers, encode_frame(payload, binary), payload, binary, None)
            if self._counters is not None:
                self._counters.delivered += count

    def _fan_out(
        self,
        subscribers: set[Subscription],
        frame: bytes,
        payload: bytes,
        binary: bool,
        exclude: WebSocket | None,
    ) -> int:
        size = len(frame)
        count = 0
        slow: list[Subscription] | None = None
        for subscription in subscribers:
            ws = subscription.ws
            if ws is exclude:
                continue
            transport = subscription.transport
            if (
                subscription.drain is None
                and transport.get_write_buffer_size() + size <= subscription.high_water
                and not ws.closed
                and not transport.is_closing()
            ):
                # The fast path: the frame bytes are shared, nothing is copied.
                transport.write(frame)
                count += 1
            elif slow is None:
                slow = [subscription]
            else:
                slow.append(subscription)
        if slow is not None:
            # Outside the loop: an overflow leaves the topic, changing the set.
            for subscription in slow:
                count += self._enqueue(subscription, payload, binary)
        return count

    def _enqueue(self, subscription: Subscription, payload: bytes, binary: bool) -> int:
        if not subscription.writable or self._by_session.get(subscription.ws) is not subscription:
            return 0
        if len(subscription.backlog) >= self.max_queued:
            self._overflow(subscription)
            return 0
        subscription.backlog.append((payload, binary))
        if subscription.drain is None:
            subscription.drain = self._spawn(self._drain(subscription))
        return 1

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _drain(self, subscription: Subscription) -> None:
        """Send a slow subscriber's queue through the session, waiting for the peer."""
        backlog = subscription.backlog
        ws = subscription.ws
        try:
            while backlog:
                payload, binary = backlog[0]
                # Waits at most send_timeout for the peer to read, then aborts.
                # (The slow path only: a text payload is decoded again here.)
                if binary:
                    await ws.send_bytes(payload)
                else:
                    await ws.send_text(payload.decode())
                backlog.popleft()
        except ConnectionResetError:  # includes PeerNotReadingError
            backlog.clear()
        finally:
            if subscription.drain is asyncio.current_task():
                subscription.drain = None

    def _overflow(self, subscription: Subscription) -> None:
        ws = subscription.ws
        logger.warning(
            "Subscriber too slow: %d published messages waiting (max_queued=%d), "
            "closing with 1008: %s topics=%s",
            len(subscription.backlog),
            self.max_queued,
            ws,
            sorted(subscription.topics),
        )
        subscription.stop_draining()
        topics, subscription.topics = subscription.topics, set()
        self._leave(subscription, topics)
        if self._counters is not None:
            self._counters.slow_closes += 1
        self._spawn(_close_slow_subscriber(ws))


async def _close_slow_subscriber(ws: WebSocket) -> None:
    # The peer is not reading: close() waits at most send_timeout for the close
    # frame to go out, then aborts the connection (and logs it).
    with contextlib.suppress(ConnectionResetError):  # includes PeerNotReadingError
        await ws.close(WSCloseCode.POLICY_VIOLATION, "subscriber too slow")


#: Each application's fan-out (its topics and broker).
FANOUT_KEY: Final = web.AppKey("aiohttp_spry.fanout", Fanout)
