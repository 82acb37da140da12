"""Local fan-out: which sessions of this process subscribe to which topics, and delivery to them.

A published message is encoded once into one WebSocket frame, and that frame is
written synchronously to the transport of every subscriber that keeps up: no
task, no coroutine and no copy per subscriber. A subscriber whose send buffer is
over its high-water mark gets the slow path instead: its own bounded queue,
drained by one task that waits for the peer; when the queue overflows, the
session is closed with 1008 and logged. The others are never delayed by it.

The fan-out owns one :class:`Subscription` per subscribing session: its topics,
its transport and its queue. The session itself holds no pub/sub state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
from collections import deque
from collections.abc import Coroutine, Iterable
from typing import TYPE_CHECKING, Any, Final

from aiohttp import WSCloseCode, WSMsgType, web

from ..log import pubsub_logger as logger
from .broker import Broker

if TYPE_CHECKING:
    from ..websocket.session import WebSocket

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

    __slots__ = ("_by_session", "_counters", "_tasks", "_topics", "broker", "max_queued")

    def __init__(self, broker: Broker, max_queued: int) -> None:
        self.broker = broker
        self.max_queued = max_queued
        self._topics: dict[str, set[Subscription]] = {}
        self._by_session: dict[WebSocket, Subscription] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._counters: FanoutCounters | None = None

    def count_into(self, counters: FanoutCounters) -> None:
        """Count publications, deliveries and slow closes from now on (metrics)."""
        self._counters = counters

    # -- lifecycle (aiohttp signals) ---------------------------------------------

    async def start(self, app: web.Application) -> None:
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

    async def subscribe(self, ws: WebSocket, topic: str) -> None:
        """Add ``ws`` to ``topic``; return once the broker will deliver it too."""
        check_topic(topic)
        subscription = self._by_session.get(ws)
        if subscription is None:
            subscription = self._by_session[ws] = Subscription(ws)
        if topic not in subscription.topics:
            subscription.topics.add(topic)
            self._topics.setdefault(topic, set()).add(subscription)
        # Every joiner waits, not only the first: the broker returns once
        # messages from other processes will arrive.
        await self.broker.subscribe(topic)

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
        for topic in topics:
            subscribers = self._topics.get(topic)
            if subscribers is None:
                continue
            subscribers.discard(subscription)
            if not subscribers:
                del self._topics[topic]
                self.broker.unsubscribe(topic)

    # -- delivery --------------------------------------------------------------

    def publish(self, topic: str, data: Any, exclude: WebSocket | None = None) -> int:
        """Deliver ``data`` to the local subscribers of ``topic`` but ``exclude``,
        and hand it to the broker for the other processes.

        Returns:
            How many local sessions it was written or queued to.

        Raises:
            TypeError: ``data`` is not ``str``, bytes or JSON-serializable, or
                ``topic`` is not a ``str``.
            ValueError: ``topic`` is empty.
        """
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
