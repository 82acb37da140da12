"""How the Redis brokers name a topic's channels and keys; choosing the cluster broker by URL."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from aiohttp_spry.pubsub import broker_from_url
from aiohttp_spry.pubsub.cluster import RedisClusterBroker
from aiohttp_spry.pubsub.redis_names import SLOTS, ClusterNames, RedisNames

TOPICS = ["room", "", "}", "{", "a}b{c", "\x01", "\x01c", "x\x01e", "élan 🚀", "{room}", "}}{{"]


def test_single_node_names_are_the_ones_earlier_versions_used() -> None:
    names = RedisNames(b"aiohttp_spry:")
    assert names.channel("room:a") == b"aiohttp_spry:room:a"
    assert names.presence_channel("room:a") == b"aiohttp_spry:\x00p\x00room:a"
    assert names.keys("room:a", b"meta", b"pz") == [
        b"aiohttp_spry:{room:a}:meta",
        b"aiohttp_spry:{room:a}:pz",
    ]
    assert names.liveness(b"\x01\x02") == b"aiohttp_spry:_node:0102"
    assert names.parse(b"aiohttp_spry:\x00p\x00room:a") == ("room:a", True)
    assert names.parse(b"aiohttp_spry:room:a") == ("room:a", False)
    assert names.topic(b"aiohttp_spry:room:a") == "room:a"
    assert not names.sharded


@pytest.mark.parametrize("topic", TOPICS)
def test_on_a_cluster_every_channel_and_key_of_a_topic_is_on_one_slot(topic: str) -> None:
    names = ClusterNames(b"aiohttp_spry:")
    slots = {
        key_slot(name)
        for name in [
            names.channel(topic),
            names.presence_channel(topic),
            *names.keys(topic, b"meta", b"stream", b"pz", b"ph"),
        ]
    }
    assert len(slots) == 1, (topic, slots)


@pytest.mark.parametrize("topic", TOPICS)
def test_cluster_channels_give_their_topic_back(topic: str) -> None:
    names = ClusterNames(b"p:")
    assert names.parse(names.channel(topic)) == (topic, False)
    assert names.parse(names.presence_channel(topic)) == (topic, True)
    assert names.topic(names.channel(topic)) == topic


def test_different_topics_get_different_cluster_channels() -> None:
    names = ClusterNames(b"p:")
    channels = {names.channel(topic) for topic in TOPICS}
    assert len(channels) == len(TOPICS)


def test_topics_spread_over_the_slots() -> None:
    names = ClusterNames(b"aiohttp_spry:")
    slots = {key_slot(names.channel(f"room:{n}")) for n in range(1000)}
    assert len(slots) > 900  # one topic per slot, not one slot for all


@pytest.mark.parametrize(
    "channel", [b"q:{room}", b"p:room", b"p:{room}x", b"p:{ro\x01zm}", b"p:{room"]
)
def test_a_foreign_channel_is_refused_with_a_value_error(channel: bytes) -> None:
    with pytest.raises(ValueError, match="is not a topic channel of b'p:'"):
        ClusterNames(b"p:").parse(channel)


@pytest.mark.parametrize("prefix", [b"app{1}:", b"app}", b"{"])
def test_a_prefix_with_a_brace_is_refused_on_a_cluster(prefix: bytes) -> None:
    with pytest.raises(ValueError, match=r"channel_prefix .* holds a brace"):
        ClusterNames(prefix)


def test_a_shards_liveness_channel_is_on_one_of_its_slots() -> None:
    names = ClusterNames(b"p:")
    for owned in (set(range(0, 5461)), set(range(10923, SLOTS)), {4242}):
        channel = names.liveness_on(b"\x00" * 8, owned)
        assert key_slot(channel) in owned
        assert channel.startswith(b"p:_node:0000000000000000{")
    with pytest.raises(LookupError):
        names.liveness_on(b"\x00" * 8, set())


def test_broker_from_url_picks_the_cluster_broker() -> None:
    broker = broker_from_url("redis+cluster://127.0.0.1:7000")
    assert isinstance(broker, RedisClusterBroker)
    assert repr(broker) == "RedisClusterBroker('redis+cluster://127.0.0.1:7000')"
    secret = broker_from_url("rediss+cluster://:hunter2@127.0.0.1:7000")
    assert "hunter2" not in repr(secret)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://127.0.0.1:7000", "url must be redis\\+cluster://HOST:PORT"),
        ("redis+cluster://", "url must be redis\\+cluster://HOST:PORT"),
        ("redis+cluster://127.0.0.1:7000/3", "database 0 only"),
    ],
)
def test_a_bad_cluster_url_is_a_value_error_naming_it(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RedisClusterBroker(url)


def test_cluster_options_are_checked() -> None:
    with pytest.raises(ValueError, match="topology_refresh must be a positive"):
        RedisClusterBroker("redis+cluster://127.0.0.1:7000", topology_refresh=0)
    with pytest.raises(ValueError, match="holds a brace"):
        RedisClusterBroker("redis+cluster://127.0.0.1:7000", channel_prefix="{app}")
    with pytest.raises(ValueError, match="max_pending must be >= 1"):
        RedisClusterBroker("redis+cluster://127.0.0.1:7000", max_pending=0)
