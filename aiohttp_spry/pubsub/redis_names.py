"""How the Redis brokers name a topic's channels and keys, on one node and on a cluster.

Every key of one topic carries the hash tag ``{…}`` of that topic, so a Redis
Cluster keeps them on one slot and one Lua script may use them all. On a
cluster the topic's channels carry the same tag: sharded pub/sub
(``SSUBSCRIBE``/``SPUBLISH``) sends a channel to the shard that owns its slot,
and a script may ``SPUBLISH`` to the channel of the keys it just wrote.

>>> names = ClusterNames(b"app:")
>>> names.channel("room")
b'app:{room}'
>>> names.keys("room", b"meta")
[b'app:{room}:meta']
>>> names.parse(names.presence_channel("a}b"))
('a}b', True)
"""

from __future__ import annotations

from collections.abc import Container
from typing import Final

from redis.crc import key_slot

__all__ = ["PRESENCE_MARK", "SLOTS", "ClusterNames", "RedisNames"]

#: Marks a topic's presence channel.
PRESENCE_MARK: Final = b"\x00p\x00"
_ESCAPE: Final = b"\x01"
#: Hash slots in a Redis Cluster.
SLOTS: Final = 16384


class RedisNames:
    """A single Redis node: the names the broker always used (kept, so data and
    processes of earlier versions keep working).

    Channels ``<prefix><topic>`` and ``<prefix>\\x00p\\x00<topic>``; keys
    ``<prefix>{<topic>}:<name>``; classic ``PUBLISH``/``SUBSCRIBE``.
    """

    __slots__ = ("prefix",)

    #: Whether channels are shard channels (``SSUBSCRIBE``/``SPUBLISH``).
    sharded = False

    def __init__(self, prefix: bytes) -> None:
        self.prefix = prefix

    def channel(self, topic: str) -> bytes:
        """The channel a topic's messages travel on."""
        return self.prefix + topic.encode()

    def presence_channel(self, topic: str) -> bytes:
        """The channel a topic's presence events travel on."""
        return self.prefix + PRESENCE_MARK + topic.encode()

    def keys(self, topic: str, *names: bytes) -> list[bytes]:
        """The topic's keys called ``names``, all on one cluster slot."""
        tag = self.prefix + b"{" + topic.encode() + b"}:"
        return [tag + name for name in names]

    def liveness(self, node: bytes) -> bytes:
        """A channel of this process's own that keeps a subscriber connection
        subscribed (so read, and an outage noticed) while no topic is."""
        return self.prefix + b"_node:" + node.hex().encode()

    def topic(self, channel: bytes) -> str:
        """The topic of a message channel (no checks: the hot path)."""
        return channel[len(self.prefix) :].decode()

    def parse(self, channel: bytes) -> tuple[str, bool]:
        """The topic of one of these channels, and whether it is a presence channel.

        Raises:
            ValueError: not a channel of this prefix (or not UTF-8).
        """
        if not channel.startswith(self.prefix):
            raise ValueError(f"channel {channel!r} is not under prefix {self.prefix!r}")
        rest = channel[len(self.prefix) :]
        if rest[:3] == PRESENCE_MARK:
            return rest[3:].decode(), True
        return rest.decode(), False


class ClusterNames(RedisNames):
    """A Redis Cluster: a topic's channels and keys share its hash tag.

    Channel ``<prefix>{<tag>}`` (messages) and ``<prefix>{<tag>}\\x00p\\x00``
    (presence), keys ``<prefix>{<tag>}:<name>``, sharded pub/sub. The tag is
    the topic with ``}`` escaped (Redis ends a tag at the first ``}``) and an
    empty topic spelled out (Redis hashes the whole key for ``{}``).
    """

    __slots__ = ()

    sharded = True

    def __init__(self, prefix: bytes) -> None:
        if b"{" in prefix or b"}" in prefix:
            raise ValueError(
                f"channel_prefix {prefix.decode(errors='replace')!r} holds a brace: on a "
                "Redis Cluster it would become every topic's hash tag (one slot for all); "
                "use a prefix without '{' and '}'"
            )
        super().__init__(prefix)

    def _tag(self, topic: str) -> bytes:
        raw = topic.encode()
        if not raw:
            return self.prefix + b"{" + _ESCAPE + b"e}"
        escaped = raw.replace(_ESCAPE, _ESCAPE + _ESCAPE).replace(b"}", _ESCAPE + b"c")
        return self.prefix + b"{" + escaped + b"}"

    def channel(self, topic: str) -> bytes:
        return self._tag(topic)

    def presence_channel(self, topic: str) -> bytes:
        return self._tag(topic) + PRESENCE_MARK

    def keys(self, topic: str, *names: bytes) -> list[bytes]:
        tag = self._tag(topic) + b":"
        return [tag + name for name in names]

    def liveness_on(self, node: bytes, slots: Container[int]) -> bytes:
        """A liveness channel (see :meth:`RedisNames.liveness`) on one of ``slots``
        (a shard's): a shard channel lives on the shard that owns its slot.

        Raises:
            LookupError: ``slots`` is empty.
        """
        base = self.liveness(node)
        for n in range(SLOTS * 64):
            channel = base + b"{" + str(n).encode() + b"}"
            if key_slot(channel) in slots:
                return channel
        raise LookupError("the shard owns no slot for its liveness channel")

    def topic(self, channel: bytes) -> str:
        return self.parse(channel)[0]

    def parse(self, channel: bytes) -> tuple[str, bool]:
        if not channel.startswith(self.prefix + b"{"):
            raise ValueError(f"channel {channel!r} is not a topic channel of {self.prefix!r}")
        start = len(self.prefix) + 1
        end = channel.find(b"}", start)
        if end < 0:
            raise ValueError(f"channel {channel!r} is not a topic channel of {self.prefix!r}")
        rest = channel[end + 1 :]
        if rest not in (b"", PRESENCE_MARK):
            raise ValueError(f"channel {channel!r} is not a topic channel of {self.prefix!r}")
        tag = channel[start:end]
        if tag == _ESCAPE + b"e":
            return "", bool(rest)
        out = bytearray()
        i = 0
        while i < len(tag):
            byte = tag[i : i + 1]
            if byte == _ESCAPE:
                code = tag[i + 1 : i + 2]
                if code == _ESCAPE:
                    out += _ESCAPE
                elif code == b"c":
                    out += b"}"
                else:
                    raise ValueError(
                        f"channel {channel!r} is not a topic channel of {self.prefix!r}"
                    )
                i += 2
            else:
                out += byte
                i += 1
        return out.decode(), bool(rest)
