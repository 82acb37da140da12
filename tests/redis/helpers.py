"""Helpers for the Redis suite: a small pub/sub app, collecting clients, a cuttable TCP proxy."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.http import WSMessageTextBytes

from aiohttp_spry import SPRY_KEY, BinaryDataReceived, Event, Spry, TextDataReceived, WebSocket
from aiohttp_spry.pubsub import Broker
from tests.support.polling import eventually
from tests.support.procs import HOST, free_port
from tests.support.redisproc import RedisProcess

from .backends import Backend, SingleNode

IO_TIMEOUT = 10.0
#: What iterating a ``ClientWebSocketResponse[bool]`` yields (``ws_connect``'s type on 3.10).
Received = aiohttp.WSMessage | WSMessageTextBytes
#: The first frame the test app sends, once the session's subscriptions are live.
READY = "ready"
CHANNEL_PREFIX = "aiohttp_spry:"
LOST = "Redis broker lost"
RECONNECTED = "Redis broker reconnected"


def _backend(redis: RedisProcess | Backend) -> Backend:
    return SingleNode(redis) if isinstance(redis, RedisProcess) else redis


def numsub(redis: RedisProcess | Backend, channel: str) -> int:
    """How many processes subscribe ``channel``'s topic, or -1 while Redis does not answer
    (``PUBSUB NUMSUB``; on a cluster ``SHARDNUMSUB`` on the topic's shard)."""
    return _backend(redis).numsub(channel)


async def numsub_reaches(
    redis: RedisProcess | Backend, channel: str, expected: int, within: float
) -> bool:
    """Whether ``numsub(redis, channel)`` reaches ``expected`` within ``within`` seconds."""
    try:
        await eventually(lambda: numsub(redis, channel) == expected, within)
    except AssertionError:
        return False
    return True


def subscriber_connections(redis: RedisProcess | Backend, prefix: str = CHANNEL_PREFIX) -> int:
    """How many brokers with ``prefix`` hold a live subscriber connection.

    Each subscribes its own ``<prefix>_node:<id>`` channel as soon as its
    subscriber connection is up (``PUBSUB CHANNELS <prefix>_node:*``; on a cluster,
    one such shard channel on every master).
    """
    return _backend(redis).brokers_connected(prefix)


async def wait_subscriber_connections(
    redis: RedisProcess | Backend, count: int, prefix: str = CHANNEL_PREFIX
) -> None:
    """Wait until ``count`` brokers have their subscriber connection up.

    Tests join sessions only after this: a subscribe() while a broker is still
    opening that connection loses the subscription (a library bug, see
    test_subscribe_while_the_broker_connects_receives_remote_messages).
    """
    await eventually(
        lambda: subscriber_connections(redis, prefix) >= count,
        what=lambda: f"{subscriber_connections(redis, prefix)} of {count} brokers connected",
    )


async def wait_numsub(
    redis: RedisProcess | Backend, channel: str, expected: int, timeout: float = IO_TIMEOUT
) -> None:
    """Wait until exactly ``expected`` connections (processes) subscribe to ``channel``."""
    await eventually(
        lambda: numsub(redis, channel) == expected,
        timeout=timeout,
        what=lambda: f"{channel} has {numsub(redis, channel)} subscribers, expected {expected}",
    )


# -- the in-process test application ---------------------------------------------------


def pubsub_app(broker: Broker | str) -> web.Application:
    """An app whose sessions subscribe and publish on command, on ``broker``.

    ``/ws?topic=a&topic=b`` subscribes to each topic, then sends ``READY``.
    A client text frame is a JSON command: ``{"topic": t, "data": d}`` →
    ``ws.publish(t, d)``; ``{"unsubscribe": t}`` → ``ws.unsubscribe(t)``, answered
    with ``{"unsubscribed": t}``. A client binary frame is published as bytes to
    the first topic. ``POST /publish/{topic}`` publishes its JSON body with
    ``spry.publish`` and answers ``{"delivered_here": n}``.
    """
    app = web.Application()
    spry = Spry(app, broker=broker)

    @spry.route("/ws")
    async def endpoint(event: Event) -> web.StreamResponse:
        topics = event.query.getall("topic", [])

        async def session(ws: WebSocket) -> None:
            for topic in topics:
                await ws.subscribe(topic)
            await ws.send_text(READY)
            async for message in ws.events:
                match message:
                    case TextDataReceived(text=text):
                        command = json.loads(text)
                        if "unsubscribe" in command:
                            await ws.unsubscribe(command["unsubscribe"])
                            await ws.send_text(json.dumps({"unsubscribed": command["unsubscribe"]}))
                        else:
                            await ws.publish(command["topic"], command["data"])
                    case BinaryDataReceived(data=data):
                        await ws.publish(topics[0], data)

        return event.ws.upgrade(session)

    @spry.route("/publish/{topic}", methods=["POST"])
    async def publish(event: Event) -> dict[str, int]:
        data = await event.request.json()
        delivered = await spry.publish(event.app, event.params["topic"], data)
        return {"delivered_here": delivered}

    return app


async def publish_from(app: web.Application, topic: str, data: Any) -> int:
    """``spry.publish(app, topic, data)`` from the test, as a background task would."""
    return await app[SPRY_KEY].publish(app, topic, data)


# -- clients -----------------------------------------------------------------------


class Peer:
    """A WebSocket client that reads every frame into ``frames`` in the background."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse[bool], name: str) -> None:
        self.ws = ws
        self.name = name
        self.frames: list[Received] = []
        self.arrivals: list[float] = []  # time.monotonic() of each frame
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def connect(
        cls, http: aiohttp.ClientSession, url: str, name: str, *, ready: bool = True
    ) -> Peer:
        """Connect; with ``ready``, consume the test app's ``READY`` frame first."""
        ws = await http.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=IO_TIMEOUT))
        if ready:
            first = await ws.receive(timeout=IO_TIMEOUT)
            assert (first.type, first.data) == (aiohttp.WSMsgType.TEXT, READY), first
        return cls(ws, name)

    async def _read(self) -> None:
        async for message in self.ws:
            self.frames.append(message)
            self.arrivals.append(time.monotonic())

    @property
    def data(self) -> list[str | bytes]:
        """The payload of every text and binary frame, in arrival order."""
        return [
            m.data
            for m in self.frames
            if m.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY)
        ]

    async def wait_for(self, predicate: Callable[[Peer], bool], what: str) -> None:
        await eventually(
            lambda: predicate(self), what=lambda: f"{self.name}: {what}; got {self.data}"
        )

    async def wait_count(self, count: int) -> None:
        await self.wait_for(lambda p: len(p.data) >= count, f"{count} message(s)")

    async def send_command(self, **command: Any) -> None:
        await self.ws.send_str(json.dumps(command))

    async def close(self) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.ws.close(), IO_TIMEOUT)
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(self._reader, IO_TIMEOUT)


def ws_url(port: int, *topics: str) -> str:
    query = "&".join(f"topic={topic}" for topic in topics)
    return f"http://{HOST}:{port}/ws?{query}"


async def barrier(apps: Iterable[web.Application], topic: str, peers: Iterable[Peer]) -> set[str]:
    """Publish an end marker from each app and wait until every peer has them all.

    Called once every peer has received what the test sent, so each marker
    reaches Redis after those messages: a duplicate (say an app's own message
    coming back from Redis) would reach a peer before the marker that travels
    the same subscriber connection. Returns the markers.
    """
    markers = set()
    for index, app in enumerate(apps):
        marker = f"end-{index}"
        markers.add(marker)
        await publish_from(app, topic, marker)
    for peer in peers:
        await peer.wait_for(lambda p: markers <= set(p.data), f"the end markers {markers}")
    return markers


# -- example_app room members ----------------------------------------------------------


@dataclass
class Member:
    """A member of an ``example_app`` room (v2), joined with ``?name=``; collects what it gets.

    ``welcome`` is its first frame; ``received`` every later text frame, as JSON.
    """

    name: str
    room: str
    ws: aiohttp.ClientWebSocketResponse[bool]
    welcome: dict[str, Any]
    received: list[dict[str, Any]] = field(default_factory=list)
    other_frames: list[Received] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    @classmethod
    async def join(
        cls,
        http: aiohttp.ClientSession,
        port: int,
        room: str,
        name: str,
        *,
        since: str | None = None,
        presence: bool = False,
    ) -> Member:
        """Join and read the welcome (sent once the member is subscribed everywhere)."""
        query = (
            f"name={name}"
            + (f"&since={since}" if since else "")
            + ("&presence=1" if presence else "")
        )
        ws = await http.ws_connect(
            f"http://{HOST}:{port}/rooms/{room}?{query}",
            timeout=aiohttp.ClientWSTimeout(ws_close=IO_TIMEOUT),
        )
        first = await ws.receive(timeout=IO_TIMEOUT)
        assert first.type is aiohttp.WSMsgType.TEXT, first
        welcome = json.loads(first.data)
        assert welcome["type"] == "welcome", welcome
        member = cls(name, room, ws, welcome)
        member.reader = asyncio.get_running_loop().create_task(member._read())
        return member

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type is aiohttp.WSMsgType.TEXT:
                self.received.append(json.loads(message.data))
                self.arrivals.append(time.monotonic())
            else:
                self.other_frames.append(message)

    def messages(self) -> list[dict[str, Any]]:
        """The message frames, in arrival order."""
        return [m for m in self.received if m.get("type") == "message"]

    def texts_from(self, sender: str) -> list[str]:
        """The texts this member got from the member named ``sender``, in order."""
        return [m["text"] for m in self.messages() if m.get("name") == sender]

    def chat(self) -> list[dict[str, Any]]:
        """What other members sent (HTTP announcements and probes left out)."""
        return [m for m in self.messages() if m.get("from") != "http"]

    def got_probe(self) -> bool:
        return any(m.get("from") == "http" for m in self.messages())

    def offsets(self) -> list[int]:
        """The offsets of the message frames, in arrival order."""
        return [m["offset"] for m in self.messages()]

    def position(self) -> str:
        """``EPOCH:OFFSET`` to come back with: the welcome's position, advanced over every
        offset seen since without a hole (message frames and acks of its own messages)."""
        epoch, offset = self.welcome["epoch"], self.welcome["offset"]
        seen = {
            m["offset"]
            for m in self.received
            if m.get("type") in ("message", "ack") and m["epoch"] == epoch
        }
        while offset + 1 in seen:
            offset += 1
        return f"{epoch}:{offset}"

    def close_code(self) -> int | None:
        closes = [f for f in self.other_frames if f.type is aiohttp.WSMsgType.CLOSE]
        return int(closes[0].data) if closes else self.ws.close_code

    async def send(self, text: str) -> None:
        await self.ws.send_str(text)

    async def leave(self) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.ws.close(), IO_TIMEOUT)
        if self.reader is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self.reader, IO_TIMEOUT)


async def until_every_member_listens(
    http: aiohttp.ClientSession,
    ports: list[int],
    room: str,
    members: list[Member],
    timeout: float = IO_TIMEOUT,
) -> None:
    """POST probe announcements (to each port in turn) until every member got one.

    A member gets its welcome once subscribed in its own process and in Redis;
    an announcement reaching every member also proves each process delivers.
    """
    probe = 0

    async def every_member_got_one() -> bool:
        nonlocal probe
        port = ports[probe % len(ports)]
        async with http.post(f"http://{HOST}:{port}/rooms/{room}", data=f"probe-{probe}") as r:
            if r.status != 200:  # not a reason to try again: fail at once
                pytest.fail(f"POST /rooms/{room} answered {r.status}: {await r.text()}")
        probe += 1
        await asyncio.sleep(0.1)  # the announcement's way through Redis
        return all(member.got_probe() for member in members)

    if not all(member.got_probe() for member in members):
        await eventually(
            every_member_got_one,
            timeout,
            0,
            what=lambda: (
                f"an announcement for members {[m.name for m in members if not m.got_probe()]}"
            ),
        )


async def exchange_and_check(members: list[Member], per_member: int) -> None:
    """Each member sends ``per_member`` texts, then ``end``; check exactly-once delivery.

    Phase 1: every member sends its texts; wait until every member has every
    other member's. Phase 2: every member sends ``end`` and each waits for the
    others' ``end``. An ``end`` leaves each process after phase 1 was complete
    everywhere, so a duplicate of a phase-1 message (from Redis, or local)
    would have arrived before it. Then each member must have exactly every
    other member's texts, in order, once, and none of its own.
    """
    names = [m.name for m in members]
    sent = {name: [f"{name}:{i}" for i in range(per_member)] for name in names}
    for i in range(per_member):
        for member in members:
            await member.send(sent[member.name][i])

    async def until_each_has(count: int) -> None:
        """Wait until every member has ``count`` messages from each other member."""
        for member in members:
            others = [name for name in names if name != member.name]
            await eventually(
                lambda: all(len(member.texts_from(o)) >= count for o in others),  # noqa: B023
                what=lambda: f"{member.name} got {len(member.chat())} message(s)",  # noqa: B023
            )

    await until_each_has(per_member)
    for member in members:
        await member.send("end")
    await until_each_has(per_member + 1)

    senders_ids: dict[str, set[str]] = {name: set() for name in names}
    for member in members:
        assert member.other_frames == [], member.other_frames
        assert member.texts_from(member.name) == [], f"{member.name} got its own messages"
        for other in names:
            if other != member.name:
                assert member.texts_from(other) == [*sent[other], "end"], (member.name, other)
        for message in member.chat():
            assert set(message) == {"type", "room", "from", "text", "name", "epoch", "offset"}
            assert message["room"] == member.room, message
            senders_ids[message["name"]].add(message["from"])
        assert len(member.chat()) == (len(members) - 1) * (per_member + 1)
    # Each sender is one session: one ws.id, different from every other sender's.
    assert all(len(ids) == 1 for ids in senders_ids.values()), senders_ids
    assert len(set().union(*senders_ids.values())) == len(names)


# -- logs --------------------------------------------------------------------------


def warning_lines(log: str, needle: str) -> list[str]:
    """WARNING lines of ``aiohttp_spry.pubsub`` (the example's log format) containing ``needle``."""
    marker = " WARNING aiohttp_spry.pubsub: "
    return [line for line in log.splitlines() if marker in line and needle in line]


def line_time(line: str) -> float:
    """The ``time.time()`` of a log line from its asctime (``2024-01-02 03:04:05,678``)."""
    stamp = " ".join(line.split(" ", 2)[:2])
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


# -- a TCP proxy that can cut one app off Redis ------------------------------------------


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to Redis; :meth:`cut` drops every connection and
    refuses new ones (an outage for the apps behind it only), :meth:`restore` listens again.
    """

    def __init__(self, target_port: int, connect_delay: float = 0.0) -> None:
        self.target_port = target_port
        #: Seconds before a new connection is forwarded (a slow or distant Redis).
        self.connect_delay = connect_delay
        self.port = free_port()
        #: While set, what Redis answers is read and thrown away (requests still go
        #: through): Redis applies a command, and its reply never arrives.
        self.swallow_replies = False
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    async def restore(self) -> None:
        assert self._server is None
        self._server = await asyncio.start_server(self._accept, HOST, self.port)

    start = restore

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=IO_TIMEOUT)

    close = cut

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            await asyncio.sleep(self.connect_delay)
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(HOST, self.target_port), IO_TIMEOUT
            )
        except (OSError, asyncio.TimeoutError):
            writer.transport.abort()
            return
        if writer.transport.is_closing():  # cut while connecting
            up_writer.transport.abort()
            return
        self._writers.add(up_writer)
        loop = asyncio.get_running_loop()
        for source, sink, replies in ((reader, up_writer, False), (up_reader, writer, True)):
            task = loop.create_task(self._pipe(source, sink, (writer, up_writer), replies))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
        replies: bool,
    ) -> None:
        try:
            while chunk := await source.read(65536):
                if replies and self.swallow_replies:
                    continue
                sink.write(chunk)
                await sink.drain()
        except OSError:
            pass
        finally:
            for writer in pair:
                writer.transport.abort()
                self._writers.discard(writer)
