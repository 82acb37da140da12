"""Local fan-out: which sessions of this process subscribe to which topics, and delivery to them.

A published message is encoded once into one WebSocket frame, and that frame is
written synchronously to the transport of every subscriber that keeps up: no
task, no coroutine and no copy per subscriber. A subscriber whose send buffer is
over its high-water mark gets the slow path instead: its own bounded queue,
drained by one task that waits for the peer; when the queue overflows, the
session is closed with 1008 and logged. The others are never delayed by it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

from aiohttp import WSCloseCode, WSMsgType, web

from .broker import Broker

if TYPE_CHECKING:
    from ..websocket import WebSocket

logger = logging.getLogger("aiohttp_spry.pubsub")

_TEXT: Final = int(WSMsgType.TEXT)
_BINARY: Final = int(WSMsgType.BINARY)
_PACK_16: Final = struct.Struct("!BBH").pack
_PACK_64: Final = struct.Struct("!BBQ").pack


def encode_frame(payload: bytes, binary: bool) -> bytes:
    """One unmasked, unfragmented server frame (RFC 6455 §5.2) carrying ``payload``.

    Sent uncompressed even on a permessage-deflate session, which RFC 7692 §6
    allows (RSV1 clear); the session's own compressor state is not touched.
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

    Raises:
        TypeError: ``data`` is not JSON-serializable.
    """
    if type(data) is str:
        return data.encode(), False
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data), True
    return json.dumps(data).encode(), False


def check_topic(topic: str) -> str:
    """Raises ``TypeError``/``ValueError`` unless ``topic`` is a non-empty ``str``."""
    if not isinstance(topic, str):
        raise TypeError(f"a topic is a str, got {type(topic).__name__}: {topic!r}")
    if not topic:
        raise ValueError("a topic is a non-empty str, got ''")
    return topic


class Backlog:
    """A slow subscriber's queue of published messages, and the task draining it."""

    __slots__ = ("messages", "task")

    def __init__(self) -> None:
        self.messages: deque[tuple[bytes, bool]] = deque()
        self.task: asyncio.Task[None] | None = None


#: A session's topic set once the session has ended: subscribing is refused.
ENDED: Final[frozenset[str]] = frozenset()


class Fanout:
    """The topics of one application's sessions, and delivery to them.

    Attributes:
        broker: carries messages to and from other processes.
        max_queued: the most published messages one slow subscriber may have
            waiting; one more closes it with 1008.
    """

    __slots__ = ("_tasks", "_topics", "broker", "max_queued")

    def __init__(self, broker: Broker, max_queued: int) -> None:
        self.broker = broker
        self.max_queued = max_queued
        self._topics: dict[str, set[WebSocket]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

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
        return frozenset(self._topics.get(topic, ()))

    @property
    def topics(self) -> frozenset[str]:
        """The topics with at least one local subscriber."""
        return frozenset(self._topics)

    async def subscribe(self, ws: WebSocket, topic: str) -> None:
        check_topic(topic)
        mine = ws._topics
        if mine is None:
            mine = ws._topics = set()
        elif not isinstance(mine, set):  # ENDED
            raise RuntimeError(f"{ws}: the session has ended; it cannot subscribe to {topic!r}")
        if topic not in mine:
            mine.add(topic)
            self._topics.setdefault(topic, set()).add(ws)
        # Every joiner waits, not only the first: the broker returns once
        # messages from other processes will arrive.
        await self.broker.subscribe(topic)

    def unsubscribe(self, ws: WebSocket, topic: str) -> None:
        check_topic(topic)
        mine = ws._topics
        if isinstance(mine, set) and topic in mine:
            mine.discard(topic)
            self._leave(ws, (topic,))

    def drop(self, ws: WebSocket) -> None:
        """The session ended: leave every topic and stop its queue. Called once."""
        mine = ws._topics
        ws._topics = ENDED
        backlog = ws._backlog
        if backlog is not None:
            ws._backlog = None
            if backlog.task is not None:
                backlog.task.cancel()
        if mine:
            self._leave(ws, mine)

    def _leave(self, ws: WebSocket, topics: Iterable[str]) -> None:
        for topic in topics:
            subscribers = self._topics.get(topic)
            if subscribers is None:
                continue
            subscribers.discard(ws)
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
        return count

    def deliver(self, topic: str, payload: bytes, binary: bool) -> None:
        """A message another process published: deliver it to the local subscribers."""
        subscribers = self._topics.get(topic)
        if subscribers:
            self._fan_out(subscribers, encode_frame(payload, binary), payload, binary, None)

    def _fan_out(
        self,
        subscribers: set[WebSocket],
        frame: bytes,
        payload: bytes,
        binary: bool,
        exclude: WebSocket | None,
    ) -> int:
        size = len(frame)
        count = 0
        slow: list[WebSocket] | None = None
        for ws in subscribers:
            if ws is exclude:
                continue
            transport = ws._transport
            if (
                ws._backlog is None
                and transport.get_write_buffer_size() + size <= ws._high_water
                and not ws._response.closed
                and not transport.is_closing()
            ):
                # The fast path: the frame bytes are shared, nothing is copied.
                transport.write(frame)
                count += 1
            elif slow is None:
                slow = [ws]
            else:
                slow.append(ws)
        if slow is not None:
            # Outside the loop: an overflow leaves the topic, changing the set.
            for ws in slow:
                count += self._enqueue(ws, payload, binary)
        return count

    def _enqueue(self, ws: WebSocket, payload: bytes, binary: bool) -> int:
        if ws._response.closed or ws._transport.is_closing() or ws._topics is ENDED:
            return 0
        backlog = ws._backlog
        if backlog is None:
            backlog = ws._backlog = Backlog()
        if len(backlog.messages) >= self.max_queued:
            self._overflow(ws, backlog)
            return 0
        backlog.messages.append((payload, binary))
        if backlog.task is None:
            backlog.task = self._spawn(self._drain(ws, backlog))
        return 1

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _drain(self, ws: WebSocket, backlog: Backlog) -> None:
        """Send a slow subscriber's queue through aiohttp, waiting for the peer."""
        messages = backlog.messages
        response = ws._response
        try:
            while messages:
                payload, binary = messages[0]
                opcode = WSMsgType.BINARY if binary else WSMsgType.TEXT
                # Waits at most send_timeout for the peer to read, then aborts.
                await ws._send_to_slow_peer(response.send_frame(payload, opcode))
                messages.popleft()
        except ConnectionResetError:  # includes PeerNotReadingError
            messages.clear()
        finally:
            if ws._backlog is backlog:
                ws._backlog = None

    def _overflow(self, ws: WebSocket, backlog: Backlog) -> None:
        logger.warning(
            "Subscriber too slow: %d published messages waiting (max_queued=%d), "
            "closing with 1008: %s topics=%s",
            len(backlog.messages),
            self.max_queued,
            ws,
            sorted(ws.topics),
        )
        backlog.messages.clear()
        if backlog.task is not None:
            backlog.task.cancel()
        ws._backlog = None
        mine = ws._topics
        if isinstance(mine, set) and mine:
            ws._topics = set()
            self._leave(ws, mine)
        self._spawn(_close_slow_subscriber(ws))


async def _close_slow_subscriber(ws: WebSocket) -> None:
    # The peer is not reading: the close frame may wait too; the wait is
    # bounded by send_timeout, then the connection is aborted (and logged).
    close = ws._response.close(code=WSCloseCode.POLICY_VIOLATION, message=b"subscriber too slow")
    with contextlib.suppress(ConnectionResetError):  # includes PeerNotReadingError
        await ws._send_to_slow_peer(close)


#: Each application's fan-out (its topics and broker).
FANOUT_KEY: Final = web.AppKey("aiohttp_spry.fanout", Fanout)
