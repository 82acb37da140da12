"""The Redis side of topics with history: the publish queue, the scripts, the read.

Owned by :class:`~aiohttp_spry.pubsub.redis.RedisBroker`, which owns the
connections, the outage bookkeeping and the publisher task, and passes its
client in. Messages wait here apart from those of topics without history (so
that path is unchanged), and a batch is sent as one pipeline of ``EVALSHA``
calls of :data:`~.redis_scripts.PUBLISH`. When the connection breaks, the
whole batch waits again, in order: the script recognises what Redis had
already applied (a per-process sequence number), so each is applied once.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from typing import Any, Final, NamedTuple

from redis.asyncio import Redis
from redis.exceptions import MovedError, NoScriptError

from ..log import pubsub_logger as logger
from . import redis_scripts
from .envelope import KINDS, Kind, Stored
from .history import Entry, HistoryPolicy, HistoryRead, new_epoch
from .positions import Position
from .redis_errors import LOST, MOVING, Commands
from .redis_names import RedisNames

__all__ = ["BatchOutcome", "Positioned", "RedisHistory"]

_BATCH: Final = 512
#: How far back (beyond the history size) a retried message is looked for.
_LOOK_BACK: Final = 4 * _BATCH


class Positioned:
    """A message of a topic with history waiting for Redis to take it."""

    __slots__ = ("future", "message", "msgid", "policy", "topic")

    def __init__(
        self,
        topic: str,
        message: Stored,
        msgid: str,
        policy: HistoryPolicy,
        future: asyncio.Future[Position] | None,
    ) -> None:
        self.topic = topic
        self.message = message
        self.msgid = msgid
        self.policy = policy
        self.future = future

    def fail(self, error: BaseException) -> None:
        if self.future is not None and not self.future.done():
            self.future.set_exception(error)


class BatchOutcome(NamedTuple):
    """What became of one batch: the link broke (it waits again, first in line), the
    node no longer owns some slots (``MOVED``: for the owner), or some wait for a
    slot that is moving (``ASK``, ``TRYAGAIN``: first in line again)."""

    lost: BaseException | None = None
    moved: tuple[Positioned, ...] = ()
    moving: bool = False


class RedisHistory:
    """Topics with history in Redis, for one broker.

    Attributes:
        queue: messages waiting for Redis, oldest first (at most ``max_pending``).
    """

    __slots__ = ("_names", "_publish", "_publish_script", "_read", "max_pending", "queue")

    def __init__(self, names: RedisNames, max_pending: int) -> None:
        self._names = names
        self.max_pending = max_pending
        self.queue: deque[Positioned] = deque()
        self._publish_script = redis_scripts.for_names(redis_scripts.PUBLISH, names)

    def bind(self, client: Commands) -> None:
        """Register the scripts on the client that runs them (at start)."""
        self._publish = client.register_script(self._publish_script)
        self._read = client.register_script(
            redis_scripts.for_names(redis_scripts.READ, self._names)
        )

    def _keys(self, topic: str) -> list[bytes]:
        return self._names.keys(topic, b"meta", b"stream")

    def enqueue(
        self, topic: str, message: Stored, msgid: str, policy: HistoryPolicy, ack: bool
    ) -> tuple[asyncio.Future[Position] | None, bool]:
        """Queue a message; its position's future (with ``ack``), and whether the oldest
        waiting one had to be dropped for it."""
        future = asyncio.get_running_loop().create_future() if ack else None
        dropped = len(self.queue) >= self.max_pending
        if dropped:
            oldest = self.queue.popleft()
            logger.warning(
                "Redis broker buffer full (max_pending=%d): dropped message %s of topic %r "
                "before Redis had it (it has no position; nobody sees a gap)",
                self.max_pending,
                oldest.msgid,
                oldest.topic,
            )
            oldest.fail(ConnectionError("dropped: the Redis broker's buffer was full"))
        self.queue.append(Positioned(topic, message, msgid, policy, future))
        return future, dropped

    def fail_all(self, reason: str) -> None:
        for item in self.queue:
            item.fail(ConnectionError(reason))
        self.queue.clear()

    def _args(self, item: Positioned) -> list[bytes | str | int]:
        policy = item.policy
        node, _, seq = item.msgid.rpartition("-")
        return [
            self._names.channel(item.topic),
            node,
            seq,
            item.message.kind.value,
            item.message.payload,
            policy.size,
            math.ceil(policy.ttl),
            math.ceil(policy.meta_ttl),
            new_epoch(),
            item.msgid,
            policy.size + _LOOK_BACK,
        ]

    async def send_batch(self, client: Redis) -> BatchOutcome:
        """Send one pipelined batch of publish scripts (see :class:`BatchOutcome`)."""
        queue = self.queue
        batch = [queue.popleft() for _ in range(min(_BATCH, len(queue)))]
        try:
            async with client.pipeline(transaction=False) as pipe:
                for item in batch:
                    # EVALSHA itself: redis-py's Script in a pipeline asks
                    # SCRIPT EXISTS first, one more round trip per batch.
                    keys = self._keys(item.topic)
                    pipe.evalsha(self._publish.sha, len(keys), *keys, *self._args(item))
                replies = await pipe.execute(raise_on_error=False)
        except asyncio.CancelledError:
            queue.extendleft(reversed(batch))
            raise
        except LOST as error:
            queue.extendleft(reversed(batch))
            return BatchOutcome(lost=error)
        except Exception:
            logger.exception(
                "Redis broker could not publish %d message(s) with history", len(batch)
            )
            for item in batch:
                item.fail(ConnectionError("Redis refused the batch (see the log)"))
            return BatchOutcome()
        moved = tuple(
            item
            for item, reply in zip(batch, replies, strict=True)
            if isinstance(reply, MovedError)
        )
        # Not applied, so sent again first in line: a Redis that restarted (or
        # flushed its scripts), or a slot that is moving here or away.
        again = [
            item
            for item, reply in zip(batch, replies, strict=True)
            if isinstance(reply, (NoScriptError, *MOVING)) and not isinstance(reply, MovedError)
        ]
        if again:
            queue.extendleft(reversed(again))
        if any(isinstance(reply, NoScriptError) for reply in replies):
            try:
                await client.script_load(self._publish_script)
            except LOST as error:
                return BatchOutcome(lost=error, moved=moved)
        for item, reply in zip(batch, replies, strict=True):
            if isinstance(reply, (NoScriptError, *MOVING)):
                continue
            if isinstance(reply, Exception):
                logger.error(
                    "Redis refused message %s of topic %r: %s", item.msgid, item.topic, reply
                )
                item.fail(reply)
            else:
                self._applied(item, reply)
        moving = any(isinstance(r, MOVING) and not isinstance(r, MovedError) for r in replies)
        return BatchOutcome(moved=moved, moving=moving)

    @staticmethod
    def _applied(item: Positioned, reply: Any) -> None:
        epoch, offset, again = reply[0].decode(), int(reply[1]), int(reply[2])
        if again:
            logger.info(
                "Redis had message %s of topic %r already (a retry after a broken link): "
                "applied once",
                item.msgid,
                item.topic,
            )
        if item.future is None or item.future.done():
            return
        if offset < 0:
            item.future.set_exception(
                LookupError(f"message {item.msgid} was applied, but is no longer in the history")
            )
        else:
            item.future.set_result(Position(epoch, offset))

    async def read(
        self, client: Commands, topic: str, since: Position | None, policy: HistoryPolicy
    ) -> HistoryRead:
        """The topic's position and its entries after ``since``, in one script."""
        reply = await self._read(
            keys=self._keys(topic),
            args=[
                since.epoch if since is not None else "",
                since.offset if since is not None else 0,
                new_epoch(),
                math.ceil(policy.meta_ttl),
            ],
            client=client,
        )
        entries = []
        for entry_id, fields in reply[2]:
            values = dict(zip(fields[::2], fields[1::2], strict=True))
            entries.append(
                Entry(
                    int(entry_id.split(b"-", 1)[0]),
                    KINDS[values[b"k"]],
                    values[b"d"],
                    values[b"m"].decode(),
                )
            )
        return HistoryRead(Position(reply[0].decode(), int(reply[1])), tuple(entries))

    @staticmethod
    def message(data: bytes) -> tuple[Position, Kind, bytes, str]:
        """What the script's ``PUBLISH`` carried: ``EPOCH\\nOFFSET\\nMSGID\\n`` + kind + data.

        Raises:
            ValueError, KeyError: not such a message.
        """
        epoch, offset, msgid, rest = data.split(b"\n", 3)
        return Position(epoch.decode(), int(offset)), KINDS[rest[:1]], rest[1:], msgid.decode()
