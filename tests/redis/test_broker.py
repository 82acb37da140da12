"""RedisBroker in-process: two (or more) apps on real ports sharing one real ``redis-server``.

Each app stands for one process: its own ``Spry(app, broker=RedisBroker(url))``
with its own two Redis connections. The tests taking ``backend`` run twice: on
one ``redis-server`` and on a 3-master Redis Cluster (``RedisClusterBroker``).
"""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
import pytest
from aiohttp import web

from aiohttp_spry import Spry
from aiohttp_spry.pubsub.redis import RedisBroker
from tests.support.polling import eventually
from tests.support.procs import HOST, free_port
from tests.support.redisproc import RedisProcess

from .backends import Backend
from .conftest import ServeApp
from .helpers import (
    CHANNEL_PREFIX,
    LOST,
    RECONNECTED,
    Peer,
    TcpProxy,
    barrier,
    numsub,
    publish_from,
    pubsub_app,
    wait_numsub,
    wait_subscriber_connections,
    ws_url,
)

TOPIC = "news"
CHANNEL = CHANNEL_PREFIX + TOPIC


def pubsub_warnings(caplog: pytest.LogCaptureFixture, needle: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "aiohttp_spry.pubsub"
        and r.levelno == logging.WARNING
        and needle in r.getMessage()
    ]


async def test_text_binary_and_json_cross_apps_with_their_frame_types(
    backend: Backend, serve_app: ServeApp, http: aiohttp.ClientSession
) -> None:
    port_a = await serve_app(pubsub_app(backend.broker()))
    port_b = await serve_app(pubsub_app(backend.broker()))
    await wait_subscriber_connections(backend, 2)
    sender = await Peer.connect(http, ws_url(port_a, TOPIC), "sender")
    receiver = await Peer.connect(http, ws_url(port_b, TOPIC), "receiver")
    await wait_numsub(backend, CHANNEL, 2)

    await sender.send_command(topic=TOPIC, data="héllo wörld")
    await sender.ws.send_bytes(b"\x00\xffbinary\x80")
    await sender.send_command(topic=TOPIC, data={"n": 1, "list": [1, "two", None]})
    await sender.send_command(topic=TOPIC, data=[1, 2.5, True])
    await receiver.wait_count(4)

    got = [(m.type, m.data) for m in receiver.frames]
    assert got == [
        (aiohttp.WSMsgType.TEXT, "héllo wörld"),
        (aiohttp.WSMsgType.BINARY, b"\x00\xffbinary\x80"),
        (aiohttp.WSMsgType.TEXT, json.dumps({"n": 1, "list": [1, "two", None]})),
        (aiohttp.WSMsgType.TEXT, json.dumps([1, 2.5, True])),
    ]
    assert json.loads(receiver.frames[2].data) == {"n": 1, "list": [1, "two", None]}
    assert sender.frames == []


async def test_ws_publish_skips_sender_and_reaches_local_peers_exactly_once(
    backend: Backend, serve_app: ServeApp, http: aiohttp.ClientSession
) -> None:
    app_a, app_b = pubsub_app(backend.url), pubsub_app(backend.url)
    port_a, port_b = await serve_app(app_a), await serve_app(app_b)
    await wait_subscriber_connections(backend, 2)
    sender = await Peer.connect(http, ws_url(port_a, TOPIC), "sender")
    local = await Peer.connect(http, ws_url(port_a, TOPIC), "local peer")
    remote = await Peer.connect(http, ws_url(port_b, TOPIC), "remote peer")
    # One Redis subscription per app, however many local subscribers it has.
    await wait_numsub(backend, CHANNEL, 2)
    assert len(Spry.subscribers(app_a, TOPIC)) == 2

    sent = [f"m{i}" for i in range(20)]
    for text in sent:
        await sender.send_command(topic=TOPIC, data=text)
    await remote.wait_count(len(sent))
    await local.wait_count(len(sent))
    # Only now can app A's own messages be coming back to it from Redis;
    # the markers travel behind them.
    markers = await barrier([app_a, app_b], TOPIC, [sender, local, remote])

    for peer in (local, remote):
        assert [d for d in peer.data if d not in markers] == sent, peer.name
        assert sorted(d for d in peer.data if d in markers) == sorted(markers), peer.name
    assert sorted(sender.data) == sorted(markers), "the sender got its own message"


async def test_order_per_publisher_and_topic_is_kept_across_apps(
    backend: Backend, serve_app: ServeApp, http: aiohttp.ClientSession
) -> None:
    app_a, app_b = pubsub_app(backend.url), pubsub_app(backend.url)
    port_a, port_b = await serve_app(app_a), await serve_app(app_b)
    await wait_subscriber_connections(backend, 2)
    sender = await Peer.connect(http, ws_url(port_a, TOPIC), "sender")
    local = await Peer.connect(http, ws_url(port_a, TOPIC), "local")
    remote = await Peer.connect(http, ws_url(port_b, TOPIC), "remote")
    await wait_numsub(backend, CHANNEL, 2)

    count = 200
    for n in range(count):  # no wait between them: they queue up in app A's publisher
        await sender.send_command(topic=TOPIC, data={"n": n})
    await remote.wait_count(count)
    markers = await barrier([app_a, app_b], TOPIC, [remote, local])

    expected = [{"n": n} for n in range(count)]
    for peer in (remote, local):
        assert [json.loads(d) for d in peer.data if d not in markers] == expected, peer.name


async def test_unsubscribe_and_session_end_drop_the_redis_subscription(
    backend: Backend, serve_app: ServeApp, http: aiohttp.ClientSession
) -> None:
    app = pubsub_app(backend.url)
    port = await serve_app(app)
    await wait_subscriber_connections(backend, 1)
    first = await Peer.connect(http, ws_url(port, "a", "b"), "first")
    second = await Peer.connect(http, ws_url(port, "a"), "second")
    await wait_numsub(backend, CHANNEL_PREFIX + "a", 1)
    await wait_numsub(backend, CHANNEL_PREFIX + "b", 1)

    # The topic keeps a local subscriber: the app stays subscribed in Redis.
    await first.send_command(unsubscribe="a")
    await first.wait_for(lambda p: json.dumps({"unsubscribed": "a"}) in p.data, "the ack")
    assert len(Spry.subscribers(app, "a")) == 1
    await asyncio.sleep(0.2)
    assert numsub(backend, CHANNEL_PREFIX + "a") == 1

    # Its last local subscriber leaves: the app unsubscribes in Redis.
    await second.close()
    await wait_numsub(backend, CHANNEL_PREFIX + "a", 0)
    assert Spry.subscribers(app, "a") == frozenset()
    assert numsub(backend, CHANNEL_PREFIX + "b") == 1

    # A session that ends leaves every topic it had.
    await first.close()
    await wait_numsub(backend, CHANNEL_PREFIX + "b", 0)
    assert Spry.subscribers(app, "b") == frozenset()


async def test_channel_prefix_isolates_apps_sharing_one_redis(
    backend: Backend, serve_app: ServeApp, http: aiohttp.ClientSession
) -> None:
    one_a = pubsub_app(backend.broker(channel_prefix="one:"))
    one_b = pubsub_app(backend.broker(channel_prefix="one:"))
    two = pubsub_app(backend.broker(channel_prefix="two:"))
    port_one_b, port_two = await serve_app(one_b), await serve_app(two)
    await serve_app(one_a)
    await wait_subscriber_connections(backend, 2, prefix="one:")
    await wait_subscriber_connections(backend, 1, prefix="two:")
    peer_one_b = await Peer.connect(http, ws_url(port_one_b, TOPIC), "one_b")
    peer_two = await Peer.connect(http, ws_url(port_two, TOPIC), "two")
    await wait_numsub(backend, "one:" + TOPIC, 1)
    await wait_numsub(backend, "two:" + TOPIC, 1)
    assert numsub(backend, CHANNEL) == 0

    await publish_from(one_a, TOPIC, "for app one only")
    await peer_one_b.wait_count(1)
    # "two" would get one_a's message on its subscriber connection before this
    # marker, which its own app publishes after the message reached Redis.
    await publish_from(two, TOPIC, "two's own")
    await peer_two.wait_count(1)
    await asyncio.sleep(0.1)

    assert peer_one_b.data == ["for app one only"]
    assert peer_two.data == ["two's own"]


async def test_http_route_publish_reaches_remote_subscribers(
    backend: Backend, serve_app: ServeApp, http: aiohttp.ClientSession
) -> None:
    port_a = await serve_app(pubsub_app(backend.url))  # no subscriber of its own
    port_b = await serve_app(pubsub_app(backend.url))
    await wait_subscriber_connections(backend, 2)
    remote = await Peer.connect(http, ws_url(port_b, TOPIC), "remote")
    remote_too = await Peer.connect(http, ws_url(port_b, TOPIC), "remote too")
    await wait_numsub(backend, CHANNEL, 1)

    url = f"http://{HOST}:{port_a}/publish/{TOPIC}"
    async with http.post(url, json={"announce": "hi"}) as response:
        assert response.status == 200
        assert await response.json() == {"delivered_here": 0}
    for peer in (remote, remote_too):
        await peer.wait_count(1)
    # The same route on the subscribers' own app delivers locally (and counts them).
    async with http.post(f"http://{HOST}:{port_b}/publish/{TOPIC}", json="local") as response:
        assert await response.json() == {"delivered_here": 2}

    for peer in (remote, remote_too):
        await peer.wait_count(2)
        assert peer.data == [json.dumps({"announce": "hi"}), "local"]
        assert [m.type for m in peer.frames] == [aiohttp.WSMsgType.TEXT] * 2


async def test_password_is_redacted_in_repr_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    broker = RedisBroker("redis://:secret@127.0.0.1:1/0")
    assert "secret" not in repr(broker)
    assert "secret" not in str(broker)
    assert broker.safe_url == "redis://:***@127.0.0.1:1/0"
    assert repr(broker) == "RedisBroker('redis://:***@127.0.0.1:1/0')"

    # Nothing listens there: the broker logs its outage (and later its unsent messages).
    caplog.set_level(logging.DEBUG, logger="aiohttp_spry.pubsub")
    dead = RedisBroker(f"redis://user:secret@{HOST}:{free_port()}/0", reconnect_max=0.1)
    app = pubsub_app(dead)
    runner = web.AppRunner(app)
    await runner.setup()  # starts the broker
    await eventually(lambda: bool(pubsub_warnings(caplog, LOST)), what="the outage WARNING")
    await publish_from(app, TOPIC, "never sent")  # waits for Redis in the pending buffer
    await eventually(
        lambda: any("still down" in r.getMessage() for r in caplog.records),
        what="a DEBUG retry line",
    )
    await runner.cleanup()  # closes the broker

    assert "secret" not in caplog.text
    assert "user:***@" in pubsub_warnings(caplog, LOST)[0]
    closing = pubsub_warnings(caplog, "unsent")
    assert len(closing) == 1 and "user:***@" in closing[0] and "1 unsent" in closing[0]


async def test_broker_started_while_redis_down_delivers_locally_then_connects(
    redis_process: RedisProcess,
    serve_app: ServeApp,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="aiohttp_spry.pubsub")
    app_a = pubsub_app(RedisBroker(redis_process.url))  # Redis is not running yet
    port_a = await serve_app(app_a)
    # subscribe() does not wait for an unreachable Redis: READY comes at once.
    sender = await Peer.connect(http, ws_url(port_a, TOPIC), "sender")
    local = await Peer.connect(http, ws_url(port_a, TOPIC), "local")
    await eventually(lambda: len(pubsub_warnings(caplog, LOST)) == 1, what="one outage WARNING")

    await sender.send_command(topic=TOPIC, data="while redis is down")
    await local.wait_count(1)
    assert local.data == ["while redis is down"]

    redis_process.start()
    # The subscription is restored without any client action.
    await wait_numsub(redis_process, CHANNEL, 1)
    port_b = await serve_app(pubsub_app(RedisBroker(redis_process.url)))
    await wait_subscriber_connections(redis_process, 2)
    remote = await Peer.connect(http, ws_url(port_b, TOPIC), "remote")
    await wait_numsub(redis_process, CHANNEL, 2)

    await sender.send_command(topic=TOPIC, data="redis is up")
    await remote.wait_count(1)
    await remote.send_command(topic=TOPIC, data="from b")
    await sender.wait_count(1)
    await local.wait_count(3)
    await eventually(lambda: bool(pubsub_warnings(caplog, RECONNECTED)), what="the reconnect line")

    assert remote.data == ["redis is up"]
    assert sender.data == ["from b"]
    assert local.data == ["while redis is down", "redis is up", "from b"]
    assert len(pubsub_warnings(caplog, LOST)) == 1
    reconnected = pubsub_warnings(caplog, RECONNECTED)
    assert len(reconnected) == 1
    assert (
        "1 subscription(s) restored, 0 message(s) published meanwhile were dropped"
        in (reconnected[0])
    )


async def test_max_pending_overflow_drops_oldest_and_reconnect_line_counts_them(
    redis_server: RedisProcess,
    serve_app: ServeApp,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """App A reaches Redis through a proxy the test cuts; app B stays connected throughout."""
    caplog.set_level(logging.WARNING, logger="aiohttp_spry.pubsub")
    proxy = TcpProxy(redis_server.port)
    await proxy.start()
    try:
        app_a = pubsub_app(RedisBroker(proxy.url, max_pending=5, reconnect_max=0.2))
        port_a = await serve_app(app_a)
        port_b = await serve_app(pubsub_app(RedisBroker(redis_server.url)))
        await wait_subscriber_connections(redis_server, 2)
        local = await Peer.connect(http, ws_url(port_a, TOPIC), "local")
        remote = await Peer.connect(http, ws_url(port_b, TOPIC), "remote")
        await wait_numsub(redis_server, CHANNEL, 2)

        await proxy.cut()
        await eventually(lambda: len(pubsub_warnings(caplog, LOST)) == 1, what="A's outage WARNING")
        for n in range(12):
            await publish_from(app_a, TOPIC, f"n{n}")
        await local.wait_count(12)  # local delivery is not held back by the outage
        await asyncio.sleep(0.3)
        assert remote.data == []

        await proxy.restore()
        await eventually(
            lambda: bool(pubsub_warnings(caplog, RECONNECTED)), what="the reconnect line"
        )
        await publish_from(app_a, TOPIC, "after")
        await remote.wait_for(lambda p: "after" in p.data, "the message sent after reconnecting")
        lost, reconnected = pubsub_warnings(caplog, LOST), pubsub_warnings(caplog, RECONNECTED)
    finally:
        await proxy.close()  # app A loses Redis again from here on

    # Only the 5 newest of the 12 waited for Redis; the 7 oldest were dropped.
    assert remote.data == ["n7", "n8", "n9", "n10", "n11", "after"]
    assert local.data == [f"n{n}" for n in range(12)] + ["after"]
    assert len(lost) == 1, lost
    assert len(reconnected) == 1, reconnected
    assert "7 message(s) published meanwhile were dropped" in reconnected[0], reconnected[0]


# -- regressions: library bugs this suite found (fixed) ------------------------------------


async def test_subscribe_while_the_broker_connects_receives_remote_messages(
    redis_server: RedisProcess, serve_app: ServeApp, http: aiohttp.ClientSession
) -> None:
    # Redis behind a proxy that takes 0.5 s to open a connection (a distant Redis):
    # the session below subscribes while app A's broker is still connecting.
    proxy = TcpProxy(redis_server.port, connect_delay=0.5)
    await proxy.start()
    try:
        app_a = pubsub_app(RedisBroker(proxy.url, subscribe_timeout=1.0))
        port_a = await serve_app(app_a)
        local = await Peer.connect(http, ws_url(port_a, TOPIC), "early subscriber")
        port_b = await serve_app(pubsub_app(RedisBroker(redis_server.url)))
        await wait_subscriber_connections(redis_server, 2)
        await wait_numsub(redis_server, CHANNEL, 1)
        remote = await Peer.connect(http, ws_url(port_b, TOPIC), "remote")
        await wait_numsub(redis_server, CHANNEL, 2)

        await remote.send_command(topic=TOPIC, data="from b")
        await eventually(
            lambda: local.data != [], timeout=2.0, what="the early subscriber's message"
        )
        assert local.data == ["from b"]
    finally:
        await proxy.close()


async def test_broker_close_right_after_the_last_subscriber_left_returns(
    redis_server: RedisProcess,
) -> None:
    broker = RedisBroker(redis_server.url)
    await broker.start(lambda topic, payload, binary: None)
    await wait_subscriber_connections(redis_server, 1)
    await broker.subscribe(TOPIC)
    await wait_numsub(redis_server, CHANNEL, 1)

    broker.unsubscribe(TOPIC)  # what the last session leaving a topic does
    await asyncio.sleep(0)  # the subscriptions task starts sending UNSUBSCRIBE
    closing = asyncio.ensure_future(broker.close())
    done, _ = await asyncio.wait([closing], timeout=3.0)
    if not done:  # free the stuck task so the test ends cleanly, then fail
        for task in broker._tasks:
            task.cancel()
        await asyncio.wait_for(closing, 3.0)
    assert done, "RedisBroker.close() did not return within 3 s"
