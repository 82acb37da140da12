"""The Redis side of presence: a sorted set scored by expiry plus a hash per topic.

Owned by a Redis broker (:mod:`.redis`, :mod:`.cluster`), which owns the
connections and passes its client in. This process's present sessions are
kept here too, so the broker's refresh task can re-announce them every
``refresh`` seconds (and re-add them after Redis lost them); events travel on
each topic's presence channel (:meth:`.redis_names.RedisNames.presence_channel`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, Final

from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript

from ..log import pubsub_logger as logger
from . import redis_scripts
from .presence import PresenceChange, PresenceEvent
from .redis_errors import LOST, Commands
from .redis_names import RedisNames

__all__ = ["RedisPresence"]

_CHUNK: Final = 500
_JOIN: Final = b"j"


class RedisPresence:
    """Presence in Redis for one broker: this process's members, the scripts, the events.

    Attributes:
        ttl: seconds an entry lives without a refresh.
        present: topic → session id → info JSON, for this process's sessions.
        watched: topics whose events a local session asked for.
    """

    __slots__ = (
        "_count",
        "_join",
        "_leave",
        "_members",
        "_names",
        "_refresh",
        "present",
        "ttl",
        "watched",
    )

    def __init__(self, names: RedisNames, ttl: float) -> None:
        self._names = names
        self.ttl = ttl
        self.present: dict[str, dict[str, bytes]] = {}
        self.watched: set[str] = set()

    def bind(self, client: Commands) -> None:
        """Register the scripts on the broker's command client (at start)."""

        def script(text: str) -> AsyncScript:
            return client.register_script(redis_scripts.for_names(text, self._names))

        self._join = script(redis_scripts.PRESENCE_JOIN)
        self._refresh = script(redis_scripts.PRESENCE_REFRESH)
        self._leave = script(redis_scripts.PRESENCE_LEAVE)
        self._members = script(redis_scripts.PRESENCE_MEMBERS)
        self._count = script(redis_scripts.PRESENCE_COUNT)

    def channel(self, topic: str) -> bytes:
        return self._names.presence_channel(topic)

    def _keys(self, topic: str) -> list[bytes]:
        return self._names.keys(topic, b"pz", b"ph")

    def _ttl_ms(self) -> int:
        return math.ceil(self.ttl * 1000)

    async def join(
        self, client: Commands | None, topic: str, id: str, info: Mapping[str, Any]
    ) -> None:
        """Remember ``id`` and announce it; without Redis now, the next refresh does."""
        encoded = json.dumps(dict(info), separators=(",", ":")).encode()
        self.present.setdefault(topic, {})[id] = encoded
        if client is None:
            return
        try:
            await self._join(
                keys=self._keys(topic),
                args=[self.channel(topic), self._ttl_ms(), id, encoded],
                client=client,
            )
        except LOST as error:
            logger.debug("Redis presence join of %s in %r deferred: %s", id, topic, error)

    async def leave(self, client: Commands | None, topic: str, id: str) -> None:
        """Forget ``id`` and announce it; without Redis, its entry expires."""
        local = self.present.get(topic)
        if local is not None:
            local.pop(id, None)
            if not local:
                del self.present[topic]
        if client is None:
            return
        try:
            await self._leave(keys=self._keys(topic), args=[self.channel(topic), id], client=client)
        except LOST as error:
            logger.debug(
                "Redis presence leave of %s in %r failed (it expires): %s", id, topic, error
            )

    async def members(self, client: Commands, topic: str) -> dict[str, Mapping[str, Any]]:
        flat = await self._members(
            keys=self._keys(topic), args=[self.channel(topic)], client=client
        )
        return {flat[i].decode(): json.loads(flat[i + 1]) for i in range(0, len(flat), 2)}

    async def count(self, client: Commands, topic: str) -> int:
        return int(await self._count(keys=self._keys(topic)[:1], client=client))

    async def refresh(self, client: Commands, topic: str) -> None:
        """Extend this process's entries in ``topic`` (re-adding lost ones) and remove
        expired ones of any process, announcing each removal."""
        members = list(self.present.get(topic, {}).items())
        head: list[bytes | str | int] = [self.channel(topic), self._ttl_ms()]
        for start in range(0, max(len(members), 1), _CHUNK):
            args = list(head)
            for id, info in members[start : start + _CHUNK]:
                args += [id, info]
            await self._refresh(keys=self._keys(topic), args=args, client=client)

    async def leave_all(self, pipe: Pipeline) -> None:
        """Queue a leave for every local session on ``pipe`` (a clean shutdown)."""
        for topic, members in self.present.items():
            for id in members:
                await self._leave(
                    keys=self._keys(topic), args=[self.channel(topic), id], client=pipe
                )
        self.present.clear()

    @staticmethod
    def event(topic: str, data: bytes) -> PresenceEvent:
        """The event a presence channel carried: ``j|l`` + id + ``\\n`` + info JSON.

        Raises:
            ValueError: not JSON (a malformed message).
        """
        head, _, info = data.partition(b"\n")
        change = PresenceChange.JOIN if head[:1] == _JOIN else PresenceChange.LEAVE
        return PresenceEvent(change, topic, head[1:].decode(), json.loads(info or b"{}"))
