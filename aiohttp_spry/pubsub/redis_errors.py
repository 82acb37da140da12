"""What the Redis brokers' parts share: the errors that mean "unreachable" or "slot moving",
and the type of a client that runs one-off commands (one node, or a whole cluster)."""

from __future__ import annotations

import asyncio
from typing import Final

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import AskError, ClusterDownError, RedisError, TryAgainError

__all__ = ["LOST", "MOVING", "Commands"]

#: A client of one-off commands: a node's, or a cluster's (which routes each by its keys).
Commands = Redis | RedisCluster

#: Errors that mean "Redis is unreachable or the connection broke".
LOST: Final = (RedisError, OSError, asyncio.TimeoutError)

#: Replies of a cluster node for a slot that is moving (``ASK``; ``MovedError`` is a
#: subclass, told apart first: the slot has moved) or not served yet: not applied,
#: try again soon.
MOVING: Final = (AskError, TryAgainError, ClusterDownError)
