"""What the Redis broker and its parts count as "Redis is unreachable or the connection broke"."""

from __future__ import annotations

import asyncio
from typing import Final

from redis.exceptions import RedisError

__all__ = ["LOST"]

#: Errors that mean "Redis is unreachable or the connection broke".
LOST: Final = (RedisError, OSError, asyncio.TimeoutError)
