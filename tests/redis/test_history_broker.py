"""RedisBroker with history, in-process: publishes retried across a broken link and applied
once, a join while Redis is unreachable, a malformed message on a history topic."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest
from aiohttp import web

from aiohttp_spry import Event, Spry, WebSocket
from aiohttp_spry.pubsub import FANOUT_KEY
from aiohttp_spry.pubsub.redis import RedisBroker
from example_app.main import create_app
from tests.support.polling import eventually
from tests.support.procs import HOST
from tests.support.redisproc import RedisProcess

from .backends import Backend
from .conftest import ServeApp
from .helpers import (
    CHANNEL_PREFIX,
    LOST,
    Member,
    TcpProxy,
    wait_numsub,
    wait_subscriber_connections,
)

ROOM = "retry"
CHANNEL = f"{CHANNEL_PREFIX}room:{ROOM}"
STREAM = f"{CHANNEL_PREFIX}{{room:{ROOM}}}:stream"


def xlen(redis: RedisProcess, key: str) -> int:
    return int(redis.command("XLEN", key).split(b"\r\n", 1)[0][1:])


def warnings(caplog: pytest.LogCaptureFixture, needle: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and needle in r.getMessage()
    ]


async def test_a_publish_whose_reply_was_lost_is_retried_and_applied_once(
    redis_server: RedisProcess,
    serve_app: ServeApp,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A's Redis link goes through a proxy that swallows Redis's replies, then breaks:
    Redis applied A's message but A never heard; A sends it again when the link is
    back, and the script recognises it."""
    caplog.set_level(logging.INFO, logger="aiohttp_spry.pubsub")
    proxy = TcpProxy(redis_server.port)
    await proxy.start()
    try:
        monkeypatch.setenv("SPRY_BROKER_URL", proxy.url)
        port_a = await serve_app(await create_app())
        monkeypatch.setenv("SPRY_BROKER_URL", redis_server.url)
        port_b = await serve_app(await create_app())
        await wait_subscriber_connections(redis_server, 2)
        a = await Member.join(http, port_a, ROOM, "a")
        b = await Member.join(http, port_b, ROOM, "b")
        await wait_numsub(redis_server, CHANNEL, 2)

        await a.send("warm-up")  # Redis has the script from here on
        await eventually(lambda: b.texts_from("a") == ["warm-up"], what="the warm-up")
        proxy.swallow_replies = True
        await a.send("applied, but the reply is lost")
        await eventually(lambda: xlen(redis_server, STREAM) == 2, what="Redis to apply it")
        await eventually(lambda: len(b.texts_from("a")) == 2, what="b getting it from Redis")
        await proxy.cut()  # the link breaks before A heard back
        await eventually(lambda: bool(warnings(caplog, LOST)), what="A's outage WARNING")
        proxy.swallow_replies = False
        await proxy.restore()
        await eventually(
            lambda: len([m for m in a.received if m.get("type") == "ack"]) == 2,
            timeout=15.0,
            what="a's ack after the retry",
        )
        await a.send("next")
        await eventually(lambda: len(b.texts_from("a")) == 3, what="b getting 'next'")
        await asyncio.sleep(0.2)
    finally:
        await proxy.close()
    assert b.texts_from("a") == ["warm-up", "applied, but the reply is lost", "next"]
    assert b.offsets() == [1, 2, 3]
    acks = [m["offset"] for m in a.received if m.get("type") == "ack"]
    assert acks == [1, 2, 3]  # the retry learned the offset Redis had given
    assert xlen(redis_server, STREAM) == 3
    [retry] = [r.getMessage() for r in caplog.records if "applied once" in r.getMessage()]
    assert "a retry after a broken link" in retry and "'room:retry'" in retry
    for member in (a, b):
        await member.leave()


async def test_joining_while_redis_is_unreachable_is_closed_1013_and_serving_continues(
    redis_server: RedisProcess,
    serve_app: ServeApp,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy = TcpProxy(redis_server.port)
    await proxy.start()
    monkeypatch.setenv("SPRY_BROKER_URL", proxy.url)
    port = await serve_app(await create_app())
    await wait_subscriber_connections(redis_server, 1)
    await proxy.cut()
    ws = await http.ws_connect(f"http://{HOST}:{port}/rooms/{ROOM}?name=late")
    closing = await ws.receive(timeout=15.0)  # after the broker's patience (5 s)
    assert closing.type is aiohttp.WSMsgType.CLOSE and closing.data == 1013, closing
    await ws.close()
    async with http.get(f"http://{HOST}:{port}/stats") as response:
        assert response.status == 200
    await proxy.restore()
    member = await Member.join(http, port, ROOM, "later")
    assert member.welcome["type"] == "welcome"
    await member.leave()
    await proxy.close()


async def test_a_malformed_message_on_a_history_topic_is_logged_and_dropped(
    redis_server: RedisProcess,
    serve_app: ServeApp,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="aiohttp_spry.pubsub")
    monkeypatch.setenv("SPRY_BROKER_URL", redis_server.url)
    port = await serve_app(await create_app())
    await wait_subscriber_connections(redis_server, 1)
    member = await Member.join(http, port, ROOM, "m")
    await wait_numsub(redis_server, CHANNEL, 1)
    redis_server.command("PUBLISH", CHANNEL, "not a positioned message")
    await eventually(lambda: bool(warnings(caplog, "malformed")), what="the WARNING")
    async with http.post(f"http://{HOST}:{port}/rooms/{ROOM}", data="still here") as response:
        assert response.status == 200
    await eventually(lambda: bool(member.messages()), what="the next message")
    assert [m["text"] for m in member.messages()] == ["still here"]
    assert not warnings(caplog, LOST)  # the connection was not dropped for it
    await member.leave()


async def test_past_max_pending_the_oldest_message_with_history_is_dropped_and_its_ack_fails(
    redis_server: RedisProcess, serve_app: ServeApp, caplog: pytest.LogCaptureFixture
) -> None:
    """What can still be lost, said out loud: past ``max_pending`` while Redis is away,
    the oldest waiting message never gets a position, its publisher's ``ack`` raises and
    a WARNING names it; the rest are numbered once Redis is back, without a hole."""
    caplog.set_level(logging.WARNING, logger="aiohttp_spry.pubsub")
    proxy = TcpProxy(redis_server.port)
    await proxy.start()
    app = web.Application()
    spry = Spry(app, broker=RedisBroker(proxy.url, max_pending=3, reconnect_max=0.2))
    spry.history("h:", size=10, ttl=60)
    await serve_app(app)
    await wait_subscriber_connections(redis_server, 1)
    fanout = app[FANOUT_KEY]
    try:
        await proxy.cut()
        await eventually(lambda: bool(warnings(caplog, LOST)), what="the outage WARNING")
        acks = [asyncio.ensure_future(fanout.publish_positioned("h:x", {"n": n})) for n in range(5)]
        await asyncio.sleep(0)
        for dropped in acks[:2]:
            with pytest.raises(ConnectionError, match="buffer was full"):
                await dropped
        await proxy.restore()
        positions = await asyncio.wait_for(asyncio.gather(*acks[2:]), 15.0)
    finally:
        await proxy.close()
    assert [p.offset for p in positions] == [1, 2, 3]
    full = warnings(caplog, "buffer full")
    assert len(full) == 2 and all("'h:x'" in line for line in full), full


async def test_a_burst_of_joins_waits_for_pooled_connections_and_every_member_joins(
    backend: Backend, serve_app: ServeApp, http: aiohttp.ClientSession
) -> None:
    # 300 members join one room with history at once, and each join reads the
    # history. redis-py's default pool refuses commands past 100 connections (and
    # Redis past its maxclients), so the broker's pool is bounded and a join waits.
    spry = Spry(broker=backend.broker(max_connections=8))
    spry.history("room:", size=50, ttl=60)

    @spry.route("/join")
    async def join(event: Event) -> web.StreamResponse:
        async def member(ws: WebSocket) -> None:
            result = await ws.subscribe("room:burst")
            await ws.send_json({"joined": True, "at": str(result.position)})
            async for _ in ws.events:
                pass

        return event.ws.upgrade(member)

    app = web.Application()
    spry.init_app(app)
    port = await serve_app(app)
    await wait_subscriber_connections(backend, 1)

    async def one() -> bool:
        ws = await http.ws_connect(f"http://{HOST}:{port}/join")
        joined = await ws.receive_json(timeout=30.0)
        clients = backend.client_connections()
        await ws.close()
        assert joined["joined"] is True
        # The pool, plus this CLIENT LIST and the fixtures' own (measured: 11; a pool
        # of 1,000 reaches 104 here). On a cluster, per node: the shard's pool and
        # the one-off commands' (each bounded by max_connections).
        return clients <= (8 if backend.kind == "redis" else 16) + 4

    bounded = await asyncio.gather(*(one() for _ in range(300)))
    assert all(bounded), "more connections to Redis than max_connections"
