"""Topic pub/sub on one process (the in-memory broker): subscribe, publish, fan-out, slow peers."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient

from aiohttp_spry import Event, MemoryBroker, Spry, TextDataReceived, WebSocket, broker_from_url
from aiohttp_spry.pubsub import FANOUT_KEY, fanout
from aiohttp_spry.pubsub.redis import RedisBroker

from .conftest import ClientFactory
from .support.polling import eventually
from .support.rawws import RawWebSocket
from .support.wire import BINARY, CLOSE

Client = TestClient[web.Request, web.Application]
TIMEOUT = 5.0


def pubsub_records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "aiohttp_spry.pubsub" and r.levelno == level]


async def room_client(serve: ClientFactory, spry: Spry | None = None) -> Client:
    """``/t/{topic}`` subscribes; text ``pub:T`` from a member is ``ws.publish``ed to T,
    then the member gets ``sent N`` (N = local sessions reached); ``unsub:T`` leaves T."""
    spry = spry or Spry()

    @spry.route("/t/{topic}")
    def join(event: Event) -> web.StreamResponse:
        topic = event.params["topic"]

        async def session(ws: WebSocket) -> None:
            await ws.subscribe(topic)
            await ws.send_json({"joined": sorted(ws.topics), "id": ws.id})
            async for message in ws.events:
                if not isinstance(message, TextDataReceived):
                    continue
                command, _, arg = message.text.partition(":")
                if command == "pub":
                    sent = await ws.publish(topic, arg)
                    await ws.send_text(f"sent {sent}")
                elif command == "unsub":
                    await ws.unsubscribe(arg)
                    await ws.send_json({"topics": sorted(ws.topics)})
                elif command == "sub":
                    await ws.subscribe(arg)
                    await ws.send_json({"topics": sorted(ws.topics)})

        return event.ws.upgrade(session)

    return await serve(spry)


async def join(client: Client, topic: str, **kwargs: Any) -> Any:
    ws = await client.ws_connect(f"/t/{topic}", **kwargs)
    hello = await ws.receive_json(timeout=TIMEOUT)
    assert hello["joined"] == [topic]
    return ws


async def until(condition: Callable[[], object], what: str) -> None:
    await eventually(condition, what=what)


async def test_published_str_bytes_and_json_arrive_as_text_binary_and_json_text(
    serve: ClientFactory,
) -> None:
    spry = Spry()
    client = await room_client(serve, spry)
    ws = await join(client, "news")
    assert await spry.publish(client.app, "news", "plain text") == 1
    assert await spry.publish(client.app, "news", b"\x00\x01\xff") == 1
    assert await spry.publish(client.app, "news", {"n": 1, "tags": ["a"]}) == 1
    text = await ws.receive(timeout=TIMEOUT)
    assert (text.type, text.data) == (WSMsgType.TEXT, "plain text")
    binary = await ws.receive(timeout=TIMEOUT)
    assert (binary.type, binary.data) == (WSMsgType.BINARY, b"\x00\x01\xff")
    as_json = await ws.receive(timeout=TIMEOUT)
    assert as_json.type is WSMsgType.TEXT and json.loads(as_json.data) == {"n": 1, "tags": ["a"]}
    await ws.close()


async def test_ws_publish_reaches_every_other_subscriber_but_not_the_sender(
    serve: ClientFactory,
) -> None:
    client = await room_client(serve)
    a, b, c = [await join(client, "room") for _ in range(3)]
    other_room = await join(client, "elsewhere")
    await a.send_str("pub:hello")
    # "sent 2" is the sender's next message: its own publication never came back.
    assert await a.receive_str(timeout=TIMEOUT) == "sent 2"
    assert await b.receive_str(timeout=TIMEOUT) == "hello"
    assert await c.receive_str(timeout=TIMEOUT) == "hello"
    await other_room.send_str("pub:only here")
    assert await other_room.receive_str(timeout=TIMEOUT) == "sent 0"
    await b.send_str("pub:second")
    assert await b.receive_str(timeout=TIMEOUT) == "sent 2"
    assert await a.receive_str(timeout=TIMEOUT) == "second"
    assert await c.receive_str(timeout=TIMEOUT) == "second"
    for ws in (a, b, c, other_room):
        await ws.close()


async def test_spry_publish_from_an_http_route_reaches_every_subscriber(
    serve: ClientFactory,
) -> None:
    spry = Spry()

    @spry.route("/announce/{topic}", methods=["POST"])
    async def announce(event: Event) -> dict[str, int]:
        sent = await spry.publish(event.app, event.params["topic"], await event.request.text())
        return {"sent": sent}

    client = await room_client(serve, spry)
    members = [await join(client, "lobby") for _ in range(3)]
    reply = await client.post("/announce/lobby", data="doors open")
    assert await reply.json() == {"sent": 3}
    for ws in members:
        assert await ws.receive_str(timeout=TIMEOUT) == "doors open"
    reply = await client.post("/announce/empty", data="nobody")
    assert await reply.json() == {"sent": 0}
    for ws in members:
        await ws.close()


async def test_messages_keep_their_order_per_publisher_and_topic(serve: ClientFactory) -> None:
    spry = Spry()
    client = await room_client(serve, spry)
    first, second = await join(client, "seq"), await join(client, "seq")
    for index in range(500):
        await spry.publish(client.app, "seq", str(index))
    for ws in (first, second):
        received = [await ws.receive_str(timeout=TIMEOUT) for _ in range(500)]
        assert received == [str(index) for index in range(500)]
        await ws.close()


async def test_unsubscribe_stops_delivery_and_topics_follows(serve: ClientFactory) -> None:
    spry = Spry()
    client = await room_client(serve, spry)
    ws = await join(client, "a")
    await ws.send_str("sub:b")
    assert await ws.receive_json(timeout=TIMEOUT) == {"topics": ["a", "b"]}
    await ws.send_str("unsub:a")
    assert await ws.receive_json(timeout=TIMEOUT) == {"topics": ["b"]}
    await ws.send_str("unsub:never-subscribed")  # does nothing
    assert await ws.receive_json(timeout=TIMEOUT) == {"topics": ["b"]}
    assert await spry.publish(client.app, "a", "not for you") == 0
    assert await spry.publish(client.app, "b", "for you") == 1
    assert await ws.receive_str(timeout=TIMEOUT) == "for you"
    assert Spry.subscribers(client.app, "a") == frozenset()
    await ws.close()


async def test_a_session_that_ends_leaves_every_topic_and_cannot_subscribe_again(
    serve: ClientFactory,
) -> None:
    spry = Spry()
    kept: list[WebSocket] = []

    @spry.route("/multi")
    def multi(event: Event) -> web.StreamResponse:
        async def session(ws: WebSocket) -> None:
            kept.append(ws)
            for topic in ("x", "y", "z"):
                await ws.subscribe(topic)
            await ws.send_text("ready")
            async for _ in ws.events:
                pass

        return event.ws.upgrade(session)

    client = await serve(spry)
    ws = await client.ws_connect("/multi")
    assert await ws.receive_str(timeout=TIMEOUT) == "ready"
    assert app_topics(client.app) == {"x", "y", "z"}
    await ws.close()
    await until(lambda: not app_topics(client.app), "the ended session to leave its topics")
    [session] = kept
    assert session.topics == frozenset()
    with pytest.raises(RuntimeError, match="session has ended"):
        await session.subscribe("x")
    assert await spry.publish(client.app, "x", "after the end") == 0


def app_topics(app: web.Application) -> set[str]:
    return set(app[FANOUT_KEY].topics)


async def test_bad_topics_and_unserializable_data_are_clear_errors(serve: ClientFactory) -> None:
    spry = Spry()
    client = await room_client(serve, spry)
    with pytest.raises(ValueError, match="non-empty"):
        await spry.publish(client.app, "", "x")
    with pytest.raises(TypeError, match="a topic is a str"):
        await spry.publish(client.app, b"bytes-topic", "x")  # type: ignore[call-overload]
    ws = await join(client, "t")
    with pytest.raises(TypeError, match="not JSON serializable"):
        await spry.publish(client.app, "t", object())
    # Nothing half-sent: the next message is the first the subscriber sees.
    await spry.publish(client.app, "t", "fine")
    assert await ws.receive_str(timeout=TIMEOUT) == "fine"
    await ws.close()


async def test_one_frame_is_encoded_per_publication_whatever_the_subscriber_count(
    serve: ClientFactory,
) -> None:
    spry = Spry()
    client = await room_client(serve, spry)
    members = [await join(client, "many") for _ in range(20)]
    with mock.patch.object(fanout, "encode_frame", wraps=fanout.encode_frame) as encode:
        assert await spry.publish(client.app, "many", "x" * 300) == 20
    assert encode.call_count == 1
    for ws in members:
        assert await ws.receive_str(timeout=TIMEOUT) == "x" * 300
        await ws.close()


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 300_000])
async def test_published_frames_of_every_length_encoding_arrive_intact(
    serve: ClientFactory, size: int
) -> None:
    spry = Spry()
    client = await room_client(serve, spry)
    ws = await join(client, "len")
    data = bytes(index % 251 for index in range(size))
    await spry.publish(client.app, "len", data)
    message = await ws.receive(timeout=TIMEOUT)
    assert message.type is WSMsgType.BINARY and message.data == data
    await ws.close()


async def test_compressed_sessions_receive_published_messages(serve: ClientFactory) -> None:
    spry = Spry()
    client = await room_client(serve, spry)
    ws = await join(client, "z", compress=15)
    await spry.publish(client.app, "z", "uncompressed frame on a deflate session")
    assert await ws.receive_str(timeout=TIMEOUT) == "uncompressed frame on a deflate session"
    await ws.send_str("pub:ping")  # the session's own (compressed) sends still work
    assert await ws.receive_str(timeout=TIMEOUT) == "sent 0"
    await ws.close()


async def test_each_application_has_its_own_topics(serve: ClientFactory) -> None:
    spry = Spry()
    first = await room_client(serve, spry)
    second_app = web.Application()
    spry.init_app(second_app)
    from aiohttp.test_utils import TestServer

    second = TestClient(TestServer(second_app))
    await second.start_server()
    try:
        one, two = await join(first, "shared-name"), await join(second, "shared-name")
        assert await spry.publish(first.app, "shared-name", "app one") == 1
        assert await one.receive_str(timeout=TIMEOUT) == "app one"
        await spry.publish(second.app, "shared-name", "app two")
        assert await two.receive_str(timeout=TIMEOUT) == "app two"
        await one.close()
        await two.close()
    finally:
        await second.close()


async def test_a_slow_subscriber_is_queued_then_closed_with_1008_and_never_delays_others(
    serve: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    max_queued = 8
    spry = Spry(max_queued=max_queued)
    client = await room_client(serve, spry)
    reader = await join(client, "firehose")
    stalled = await RawWebSocket.connect("127.0.0.1", client.port)
    assert (await stalled.request("/t/firehose")).status == 101
    await until(lambda: len(Spry.subscribers(client.app, "firehose")) == 2, "two subscribers")
    chunk = 256 * 1024

    def message(index: int) -> bytes:
        return bytes([index % 256]) * chunk

    published = 0
    # The stalled peer never reads: kernel and transport buffers fill, then its
    # queue, then it is closed. The reading peer must get every message, in order.
    for index in range(400):
        await spry.publish(client.app, "firehose", message(index))
        published += 1
        received = await reader.receive(timeout=TIMEOUT)
        assert received.data == message(index)
        if pubsub_records(caplog, logging.WARNING):
            break
    # Only the slow path logs this: the stalled peer's own queue filled to
    # max_queued (fast-path writes never queue), and one more overflowed it.
    [warning] = pubsub_records(caplog, logging.WARNING)
    text = warning.getMessage()
    assert text.startswith("Subscriber too slow"), text
    assert f"{max_queued} published messages waiting (max_queued={max_queued})" in text, text
    assert "closing with 1008" in text and "firehose" in text, text
    assert len(Spry.subscribers(client.app, "firehose")) == 1
    # Others keep receiving after the slow one is gone.
    for index in range(5):
        await spry.publish(client.app, "firehose", f"after {index}")
        assert await reader.receive_str(timeout=TIMEOUT) == f"after {index}"
    # The stalled peer, reading at last, finds what reached it before the overflow:
    # the first messages, in order, whole, and not the rest (its queue was dropped),
    # then the close frame with 1008.
    hello = await stalled.read_frame()
    assert json.loads(hello.payload)["joined"] == ["firehose"]
    delivered = 0
    for _ in range(published + 10):
        frame = await stalled.read_frame()
        if frame.opcode == CLOSE:
            break
        assert (frame.opcode, frame.payload) == (BINARY, message(delivered)), delivered
        delivered += 1
    else:
        raise AssertionError(f"no close frame after {published + 10} frames")
    assert frame.close_code == 1008
    assert 0 < delivered < published, (delivered, published)
    await stalled.aclose()
    await reader.close()


async def test_a_subscriber_that_falls_behind_then_reads_gets_everything_in_order(
    serve: ClientFactory,
) -> None:
    spry = Spry(max_queued=10_000)
    client = await room_client(serve, spry)
    lagging = await RawWebSocket.connect("127.0.0.1", client.port)
    assert (await lagging.request("/t/burst")).status == 101
    await until(lambda: Spry.subscribers(client.app, "burst"), "the subscriber")
    count, size = 120, 128 * 1024
    for index in range(count):  # far more than the socket buffers hold: some are queued
        await spry.publish(client.app, "burst", index.to_bytes(4, "big") * (size // 4))
    assert await lagging.read_frame()  # the session's "joined" message
    for index in range(count):
        frame = await lagging.read_frame()
        assert frame.opcode == 0x2 and frame.payload == index.to_bytes(4, "big") * (size // 4)
    await lagging.aclose()


def test_broker_url_selects_the_broker() -> None:
    assert isinstance(broker_from_url(None), MemoryBroker)
    assert isinstance(broker_from_url(""), MemoryBroker)
    redis = broker_from_url("redis://:hunter2@127.0.0.1:6379/0")
    assert isinstance(redis, RedisBroker)
    assert "hunter2" not in repr(redis)
    with pytest.raises(ValueError, match="unknown broker URL scheme 'http'"):
        broker_from_url("http://127.0.0.1:6379")


async def test_a_broker_serves_one_application_only() -> None:
    broker = MemoryBroker()
    await broker.start(lambda topic, payload, binary: None)
    with pytest.raises(RuntimeError, match="already started"):
        await broker.start(lambda topic, payload, binary: None)
    await broker.close()


def test_max_queued_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_queued must be >= 1"):
        Spry(max_queued=0)


def test_a_redis_url_without_redis_py_says_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    monkeypatch.delitem(sys.modules, "aiohttp_spry.pubsub.redis")
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)  # import fails as if absent
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'aiohttp_spry\[redis\]'") as err:
        broker_from_url("redis://:secret@127.0.0.1:6379/0")
    assert "secret" not in str(err.value)
