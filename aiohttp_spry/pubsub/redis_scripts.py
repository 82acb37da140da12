"""The Lua scripts of the Redis broker: one atomic script per publish, read, and presence change.

Keys of one topic share the hash tag ``{topic}`` (``<prefix>{<topic>}:meta``,
``:stream``, ``:pz``, ``:ph``), so a Redis Cluster keeps them on one slot and a
script may use them all:

- ``meta`` (hash): ``epoch``, ``offset`` (the last one given) and, per
  publishing process, ``n:<node>`` → the last message sequence number applied
  (a retried message is recognised and applied once);
- ``stream`` (stream): the history, entry id ``<offset>-0``, fields ``k`` (kind),
  ``d`` (data), ``m`` (message id), trimmed with ``MAXLEN ~ size``;
- ``pz`` (sorted set): present session ids scored by expiry (ms, Redis time);
  ``ph`` (hash): session id → info JSON.

The scripts take the time from Redis (``TIME``), so hosts' clocks never matter.
On a Redis Cluster they publish with ``SPUBLISH`` (:func:`for_names`): the
topic's channel carries the same hash tag, so it lives on the shard that ran
the script.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from .redis_names import RedisNames

__all__ = [
    "PRESENCE_COUNT",
    "PRESENCE_JOIN",
    "PRESENCE_LEAVE",
    "PRESENCE_MEMBERS",
    "PRESENCE_REFRESH",
    "PUBLISH",
    "READ",
    "for_names",
]


def for_names(script: str, names: RedisNames) -> str:
    """``script`` as the broker with ``names`` runs it: with sharded channels, its
    ``PUBLISH`` calls become ``SPUBLISH``.

    >>> from aiohttp_spry.pubsub.redis_names import ClusterNames
    >>> "SPUBLISH" in for_names(PRESENCE_LEAVE, ClusterNames(b"p:"))
    True
    """
    if not names.sharded:
        return script
    return script.replace("redis.call('PUBLISH'", "redis.call('SPUBLISH'")


# A new epoch (ARGV given by the caller: Lua in Redis has no real randomness)
# starts with an empty stream and offset 0.
_ENSURE_EPOCH: Final = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[EPOCH_ARG]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0)
  redis.call('EXPIRE', KEYS[1], ARGV[META_TTL_ARG])
end
"""

#: KEYS: meta, stream. ARGV: channel, node, seq, kind, data, size, ttl, meta_ttl,
#: new epoch, message id, how far back to look for a retried message.
#: Returns {epoch, offset, applied_before}; offset -1: applied before, trimmed since.
PUBLISH: Final = (
    _ENSURE_EPOCH.replace("EPOCH_ARG", "9").replace("META_TTL_ARG", "8")
    + """
local node = 'n:' .. ARGV[2]
local seq = tonumber(ARGV[3])
local seen = redis.call('HGET', KEYS[1], node)
if seen and tonumber(seen) >= seq then
  local recent = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', ARGV[11])
  for _, entry in ipairs(recent) do
    local fields = entry[2]
    for i = 1, #fields, 2 do
      if fields[i] == 'm' and fields[i + 1] == ARGV[10] then
        return {epoch, tonumber(string.match(entry[1], '^(%d+)')), 1}
      end
    end
  end
  return {epoch, -1, 1}
end
local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
redis.call('HSET', KEYS[1], node, ARGV[3])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], string.format('%d-0', offset),
           'k', ARGV[4], 'd', ARGV[5], 'm', ARGV[10])
redis.call('EXPIRE', KEYS[2], ARGV[7])
redis.call('EXPIRE', KEYS[1], ARGV[8])
redis.call('PUBLISH', ARGV[1],
           epoch .. '\\n' .. offset .. '\\n' .. ARGV[10] .. '\\n' .. ARGV[4] .. ARGV[5])
return {epoch, offset, 0}
"""
)

#: KEYS: meta, stream. ARGV: since epoch ('' for none), since offset, new epoch, meta_ttl.
#: Returns {epoch, offset, entries after since (same epoch only)}.
READ: Final = (
    _ENSURE_EPOCH.replace("EPOCH_ARG", "3").replace("META_TTL_ARG", "4")
    + """
local offset = tonumber(redis.call('HGET', KEYS[1], 'offset'))
local entries = {}
local since = tonumber(ARGV[2])
if ARGV[1] == epoch and since < offset then
  entries = redis.call('XRANGE', KEYS[2], string.format('%d-0', since + 1), '+')
end
return {epoch, offset, entries}
"""
)

# Remove expired members, publishing a leave for each (the one script that
# removes an entry is the one that announces it). KEYS: pz, ph; channel in ARGV[1].
_PRUNE: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for _, id in ipairs(expired) do
  local info = redis.call('HGET', KEYS[2], id) or '{}'
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
  redis.call('PUBLISH', ARGV[1], 'l' .. id .. '\\n' .. info)
end
"""

#: KEYS: pz, ph. ARGV: channel, ttl ms, id, info. Publishes a join when new.
PRESENCE_JOIN: Final = (
    _PRUNE
    + """
local added = redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
if added == 1 then
  redis.call('PUBLISH', ARGV[1], 'j' .. ARGV[3] .. '\\n' .. ARGV[4])
end
return added
"""
)

#: KEYS: pz, ph. ARGV: channel, ttl ms, then id, info pairs (may be none: prune only).
#: Re-adds (and announces) members a Redis restart lost.
PRESENCE_REFRESH: Final = (
    _PRUNE
    + """
local added = 0
for i = 3, #ARGV, 2 do
  if redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[i]) == 1 then
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
    redis.call('PUBLISH', ARGV[1], 'j' .. ARGV[i] .. '\\n' .. ARGV[i + 1])
    added = added + 1
  end
end
if #ARGV > 2 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return added
"""
)

#: KEYS: pz, ph. ARGV: channel, id. Publishes a leave when it was present.
PRESENCE_LEAVE: Final = """
local info = redis.call('HGET', KEYS[2], ARGV[2])
local removed = redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('HDEL', KEYS[2], ARGV[2])
if removed == 1 then
  redis.call('PUBLISH', ARGV[1], 'l' .. ARGV[2] .. '\\n' .. (info or '{}'))
end
return removed
"""

#: KEYS: pz, ph. ARGV: channel. Returns {id, info, id, info, ...} of live members.
PRESENCE_MEMBERS: Final = (
    _PRUNE
    + """
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
local out = {}
-- HMGET in chunks: unpack() of a whole large room would overflow Lua's stack.
for first = 1, #ids, 1000 do
  local chunk = {}
  for i = first, math.min(first + 999, #ids) do chunk[#chunk + 1] = ids[i] end
  local infos = redis.call('HMGET', KEYS[2], unpack(chunk))
  for i, id in ipairs(chunk) do
    out[#out + 1] = id
    out[#out + 1] = infos[i] or '{}'
  end
end
return out
"""
)

#: KEYS: pz. How many members have not expired (ZCOUNT: O(log n)).
PRESENCE_COUNT: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
"""
