"""Recovery: this process's ordered stream of each topic with history, and replay-then-live.

For every topic with history that has local subscribers, a :class:`TopicLog`
keeps the topic's position as this process has delivered it and the frames of
its latest messages. Messages from the broker go through it: a duplicate
(offset already delivered) is dropped, the next offset is delivered, and a gap
(after the broker's subscriber link broke, or a message lost on the way) makes
it read the missing messages from the broker's history first, holding what
arrives meanwhile. So every local subscriber sees one order, without gaps or
duplicates. When the history cannot fill a gap (it was lost: a new epoch, or
the gap is older than the history), the topic's local sessions are closed with
1012 and a WARNING: they come back with ``since=`` and are told
``recovered: false``. A silent gap is never an outcome.

``await ws.subscribe(topic, since=position)`` registers the session as a
*joiner* first: live messages are buffered for it while its replay is read
(from the log's frames when they reach back to ``since``, else from the
broker), then the replay is written, then the buffered messages it has not yet
seen (deduplicated by offset), and only then does it join the live set.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import secrets
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Final

import attrs

from ..log import pubsub_logger as logger
from .envelope import Kind, envelope, store
from .history import HistoryPolicy, HistoryRead
from .positions import Position, SubscribeResult

if TYPE_CHECKING:
    from ..websocket.session import WebSocket
    from .broker import Broker
    from .fanout import Fanout, Subscription

#: 1012 Service Restart: the history could not fill a gap; resubscribe with ``since``.
GAP_CLOSE: Final = 1012
GAP_REASON: Final = "topic history lost; reconnect with since"
_RETRY_MIN: Final = 0.1
_RETRY_MAX: Final = 2.0
#: Seconds a subscribe with history waits for an unreachable broker before giving up.
READ_PATIENCE: Final = 5.0


def _is_connection_error(error: Exception) -> bool:
    # redis-py's errors (ConnectionError, TimeoutError) do not derive from the
    # builtins; recognise them by name rather than importing redis here.
    return any(cls.__name__ in ("ConnectionError", "TimeoutError") for cls in type(error).__mro__)


class LogState(enum.Enum):
    LIVE = "live"
    CATCHING_UP = "catching up"


class Verdict(enum.Enum):
    DELIVER = "deliver"
    DUPLICATE = "duplicate"
    GAP = "gap"


#: A live frame for a joiner: (position, frame, text payload); no position: a presence event.
Buffered = tuple[Position | None, bytes, bytes]
#: A message from the broker waiting for a catch-up: (position, kind, payload, msgid).
Arrival = tuple[Position, Kind, bytes, str]


class Joiner:
    """A session subscribing with history: what it is owed before it goes live."""

    __slots__ = ("buffer", "position", "replay", "subscription")

    def __init__(self, subscription: Subscription) -> None:
        self.subscription = subscription
        self.buffer: list[Buffered] = []
        self.replay: list[tuple[bytes, bytes]] = []
        self.position: Position | None = None


class TopicLog:
    """One topic with history as this process delivers it.

    Attributes:
        position: the last position delivered here (``None``: none yet).
        frames: (offset, frame, text) of the latest messages, contiguous, ending
            at ``position``.
        joiners: sessions subscribing right now (their live messages are buffered).
        excluded: message id → the local session that published it (not sent to it).
        suspect: the broker's link broke since the last delivery (an epoch change
            may hide a gap).
    """

    __slots__ = (
        "again",
        "excluded",
        "frames",
        "held",
        "joiners",
        "policy",
        "position",
        "state",
        "suspect",
        "topic",
    )

    def __init__(self, topic: str, policy: HistoryPolicy) -> None:
        self.topic = topic
        self.policy = policy
        self.position: Position | None = None
        self.frames: deque[tuple[int, bytes, bytes]] = deque(maxlen=policy.size)
        self.joiners: dict[Subscription, Joiner] = {}
        self.excluded: dict[str, WebSocket] = {}
        self.state = LogState.LIVE
        self.held: list[Arrival] = []
        self.suspect = False
        self.again = False

    def accept(self, position: Position) -> Verdict:
        """What to do with a message at ``position`` from the broker."""
        last = self.position
        if last is None:
            return Verdict.DELIVER
        if position.epoch == last.epoch:
            if position.offset <= last.offset:
                return Verdict.DUPLICATE
            return Verdict.DELIVER if position.offset == last.offset + 1 else Verdict.GAP
        # A new epoch starting at 1 while the link never broke: the history
        # expired with nothing pending, so nothing was missed.
        return Verdict.DELIVER if position.offset == 1 and not self.suspect else Verdict.GAP

    def record(self, position: Position, frame: bytes, text: bytes) -> None:
        last = self.position
        if last is not None and last.epoch != position.epoch:
            self.frames.clear()
        self.frames.append((position.offset, frame, text))
        self.position = position

    def reset(self, position: Position) -> None:
        self.frames.clear()
        self.position = position

    def local_replay(self, since: Position | None) -> tuple[bool | None, list[tuple[bytes, bytes]]]:
        """Serve ``since`` from the frames: (recovered, replay)."""
        position = self.position
        assert position is not None
        if since is None:
            return None, []
        if since.epoch != position.epoch or since.offset > position.offset:
            return False, []
        missed = position.offset - since.offset
        if missed == 0:
            return True, []
        frames = self.frames
        if len(frames) < missed:
            return False, []
        start = len(frames) - missed
        return True, [(frames[i][1], frames[i][2]) for i in range(start, len(frames))]

    def can_serve(self, since: Position | None) -> bool:
        """Whether the frames alone answer ``since`` (without asking the broker)."""
        position = self.position
        if position is None:
            return False
        if since is None or since.epoch != position.epoch or since.offset > position.offset:
            return True  # nothing to replay: "not recovered" or "from now" needs no read
        return position.offset - since.offset <= len(self.frames)


@attrs.define(slots=True)
class RecoveryCounters:
    """Plain counters since the application started (for metrics; read with ``as_dict()``).

    Attributes:
        recovered: subscribes with ``since`` that got every missed message.
        not_recovered: subscribes with ``since`` answered ``recovered=False``.
        replayed: messages replayed to those sessions.
        caught_up: messages this process read from the history after a gap.
        gaps_closed: sessions closed with 1012 because the history could not fill a gap.
    """

    recovered: int = 0
    not_recovered: int = 0
    replayed: int = 0
    caught_up: int = 0
    gaps_closed: int = 0

    def as_dict(self) -> dict[str, int]:
        return attrs.asdict(self)


class Recovery:
    """The topics with history of one application's fan-out (owned by :class:`Fanout`)."""

    __slots__ = (
        "_counted",
        "_counting",
        "_logs",
        "_node",
        "_seq",
        "broker",
        "counters",
        "fanout",
    )

    def __init__(self, fanout: Fanout, broker: Broker) -> None:
        self.fanout = fanout
        self.broker = broker
        self._logs: dict[str, TopicLog] = {}
        self._node = secrets.token_hex(8)
        self._seq = 0
        # The message being published, for the count of a synchronous delivery.
        self._counting = ""
        self._counted = 0
        self.counters = RecoveryCounters()

    def has_joiners(self, topic: str) -> bool:
        log = self._logs.get(topic)
        return log is not None and bool(log.joiners)

    def position(self, topic: str) -> Position | None:
        log = self._logs.get(topic)
        return log.position if log is not None else None

    # -- publishing ----------------------------------------------------------------

    def publish(
        self, topic: str, data: Any, exclude: WebSocket | None, policy: HistoryPolicy
    ) -> int:
        """Hand a message to the broker; how many local sessions got it at once
        (a broker that assigns positions later delivers later: 0)."""
        self._counted = 0
        self._send(topic, data, exclude, policy, ack=False)
        counted, self._counting, self._counted = self._counted, "", 0
        return counted

    def publish_positioned(
        self, topic: str, data: Any, exclude: WebSocket | None, policy: HistoryPolicy
    ) -> Position | asyncio.Future[Position]:
        assigned = self._send(topic, data, exclude, policy, ack=True)[1]
        assert assigned is not None
        return assigned

    def _send(
        self, topic: str, data: Any, exclude: WebSocket | None, policy: HistoryPolicy, ack: bool
    ) -> tuple[str, Position | asyncio.Future[Position] | None]:
        message = store(topic, data)
        self._seq += 1
        msgid = f"{self._node}-{self._seq}"
        log = self._logs.get(topic)
        if exclude is not None and log is not None:
            log.excluded[msgid] = exclude
        self._counting = msgid
        return msgid, self.broker.publish_positioned(topic, message, msgid, policy, ack=ack)

    # -- from the broker -------------------------------------------------------------

    def deliver_positioned(
        self, topic: str, position: Position, kind: Kind, payload: bytes, msgid: str
    ) -> None:
        log = self._logs.get(topic)
        if log is None:
            return  # no local subscriber (any more)
        if log.state is LogState.CATCHING_UP:
            log.held.append((position, kind, payload, msgid))
            return
        verdict = log.accept(position)
        if verdict is Verdict.DELIVER:
            self._emit(log, position, kind, payload, msgid)
        elif verdict is Verdict.DUPLICATE:
            log.excluded.pop(msgid, None)
        else:
            logger.debug(
                "Topic %r: %s arrived after %s; reading the gap from the history",
                topic,
                position,
                log.position,
            )
            log.held.append((position, kind, payload, msgid))
            self._catch_up(log)

    def resync(self, topic: str) -> None:
        log = self._logs.get(topic)
        if log is None or log.position is None:
            return
        log.suspect = True
        if log.state is LogState.LIVE:
            self._catch_up(log)
        else:
            log.again = True  # the link broke again during a catch-up: one more

    def _emit(
        self, log: TopicLog, position: Position, kind: Kind, payload: bytes, msgid: str
    ) -> int:
        text = envelope(kind, payload, position)
        frame = self.fanout.frame(text)
        log.record(position, frame, text)
        for joiner in log.joiners.values():
            joiner.buffer.append((position, frame, text))
        if log.joiners:
            limit = self.fanout.max_queued
            for joiner in [j for j in log.joiners.values() if len(j.buffer) > limit]:
                self.fanout.overflow(joiner.subscription)  # held too long, or too slow
        count = self.fanout.fan_out_frame(log.topic, frame, text, log.excluded.pop(msgid, None))
        if msgid == self._counting:
            self._counted = count
        return count

    # -- catching up ---------------------------------------------------------------

    def _catch_up(self, log: TopicLog) -> None:
        log.state = LogState.CATCHING_UP
        self.fanout.spawn(self._run_catch_up(log))

    async def _run_catch_up(self, log: TopicLog) -> None:
        topic = log.topic
        attempt = 0
        read: HistoryRead | None = None
        since = log.position
        while self._logs.get(topic) is log:
            since = log.position
            try:
                read = await self.broker.read_history(topic, since, log.policy)
                break
            except asyncio.CancelledError:
                raise
            except Exception as error:
                logger.debug("Topic %r: reading the history failed (%s); retrying", topic, error)
                await asyncio.sleep(min(_RETRY_MAX, _RETRY_MIN * 2**attempt))
                attempt += 1
        if read is None or self._logs.get(topic) is not log:
            return
        if since is None or read.recovers(since):
            epoch = read.position.epoch
            caught = 0
            for entry in read.entries:
                if self._logs.get(topic) is not log:
                    return
                self._emit(
                    log, Position(epoch, entry.offset), entry.kind, entry.payload, entry.msgid
                )
                caught += 1
            self.counters.caught_up += caught
            if caught:
                logger.info("Topic %r: caught up %d message(s) from the history", topic, caught)
        else:
            closing = self.fanout.close_topic(topic, GAP_CLOSE, GAP_REASON)
            self.counters.gaps_closed += closing
            logger.warning(
                "Topic %r: the history cannot fill the gap after %s (now %s); closing %d "
                "local session(s) with 1012 so they resubscribe with since= (recovered: false)",
                topic,
                since,
                read.position,
                closing,
            )
            log.reset(read.position)
        if log.again:
            # What this read saw may predate the latest break: read once more,
            # still holding what arrives, still suspecting an epoch change.
            log.again = False
            self.fanout.spawn(self._run_catch_up(log))
            return
        log.suspect = False
        log.state = LogState.LIVE
        held, log.held = log.held, []
        for position, kind, payload, msgid in held:
            self.deliver_positioned(topic, position, kind, payload, msgid)

    # -- subscribing ---------------------------------------------------------------

    async def subscribe(
        self,
        subscription: Subscription,
        topic: str,
        policy: HistoryPolicy,
        since: Position | None,
        hold: bool,
        before: Callable[[], Awaitable[None]] | None = None,
    ) -> SubscribeResult:
        """Join ``topic`` (already in the subscription's topics, not yet live).

        ``before`` runs once the session is a joiner (so what it causes, such as
        presence events, is buffered for it too) and before its replay is read.

        Raises:
            ConnectionError: the broker could not be read for ``READ_PATIENCE``
                seconds (Redis down): the position is unknown.
        """
        log = self._logs.get(topic)
        if log is None:
            log = self._logs[topic] = TopicLog(topic, policy)
        joiner = log.joiners[subscription] = Joiner(subscription)
        try:
            if before is not None:
                await before()
            if log.can_serve(since):
                recovered, joiner.replay = log.local_replay(since)
                joiner.position = log.position
                read = None
            else:
                await self.broker.subscribe(topic)
                read = await self._read(topic, since, policy)
        except BaseException:
            log.joiners.pop(subscription, None)
            self.fanout.unsubscribe(subscription.ws, topic)
            raise
        if log.joiners.get(subscription) is not joiner:
            # Left (or closed) while joining: nothing to deliver.
            position = read.position if read is not None else log.position
            return SubscribeResult(False if since is not None else None, position)
        if read is not None:
            if log.position is None:
                log.position = read.position
            recovered = None if since is None else read.recovers(since)
            joiner.position = read.position
            if recovered:
                epoch = read.position.epoch
                for entry in read.entries:
                    text = envelope(entry.kind, entry.payload, Position(epoch, entry.offset))
                    joiner.replay.append((self.fanout.frame(text), text))
        result = SubscribeResult(recovered, joiner.position, len(joiner.replay))
        counters = self.counters
        if recovered:
            counters.recovered += 1
            counters.replayed += result.replayed
        elif recovered is False:
            counters.not_recovered += 1
        if not hold:
            self.resume(subscription, topic)
        return result

    async def _read(self, topic: str, since: Position | None, policy: HistoryPolicy) -> HistoryRead:
        """Read the history, retrying with backoff for up to ``READ_PATIENCE`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READ_PATIENCE
        attempt = 0
        while True:
            try:
                return await self.broker.read_history(topic, since, policy)
            except (ConnectionError, OSError, asyncio.TimeoutError) as error:
                failure: Exception = error
            except Exception as error:
                if not _is_connection_error(error):
                    raise
                failure = error
            if loop.time() >= deadline:
                raise ConnectionError(
                    f"topic {topic!r}: the broker's history could not be read for "
                    f"{READ_PATIENCE}s ({type(failure).__name__}: {failure}); try again later"
                ) from failure
            await asyncio.sleep(min(_RETRY_MAX, _RETRY_MIN * 2**attempt))
            attempt += 1

    def resume(self, subscription: Subscription, topic: str) -> int:
        """Write what a joiner is owed (replay, then unseen live messages) and make it live.

        Returns:
            How many frames were written or queued.
        """
        log = self._logs.get(topic)
        joiner = log.joiners.pop(subscription, None) if log is not None else None
        if joiner is None:
            return 0
        fanout = self.fanout
        sent = 0
        for frame, text in joiner.replay:
            sent += fanout.send_frame(subscription, frame, text)
        last = joiner.position
        for position, frame, text in joiner.buffer:
            if position is not None:
                if (
                    last is not None
                    and position.epoch == last.epoch
                    and position.offset <= last.offset
                ):
                    continue  # replayed already (or before the point it joined at)
                last = position
            sent += fanout.send_frame(subscription, frame, text)
        fanout.go_live(subscription, topic)
        return sent

    def hold_frame(self, subscription: Subscription, topic: str, frame: bytes, text: bytes) -> bool:
        """Buffer a frame without a position for a joiner of ``topic``; whether it is one."""
        log = self._logs.get(topic)
        joiner = log.joiners.get(subscription) if log is not None else None
        if joiner is None:
            return False
        joiner.buffer.append((None, frame, text))
        return True

    def leave(self, subscription: Subscription, topic: str, last: bool) -> None:
        """``subscription`` left ``topic``; ``last``: no local session is left in it."""
        log = self._logs.get(topic)
        if log is None:
            return
        log.joiners.pop(subscription, None)
        if last and not log.joiners:
            del self._logs[topic]

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self.fanout.spawn(coro)


async def close_quietly(ws: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(ConnectionResetError):  # includes PeerNotReadingError
        await ws.close(code, reason)
