"""What a Redis Cluster adds, with two example processes on a real 3-master cluster.

The semantics both brokers share (order, exactly once, recovery, presence, an
outage, resubscription) run on both in test_broker, test_processes,
test_recovery and test_outage (their ``[cluster]`` ids). Here: a slot that
moves while messages flow (``MOVED``), a slot held half-moved (``ASK`` /
``TRYAGAIN``), a shard that restarts while the others keep serving, and a
master added to a running cluster, discovered without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from aiohttp_spry import Spry
from aiohttp_spry.pubsub.cluster import RedisClusterBroker
from aiohttp_spry.pubsub.redis import RedisBroker
from aiohttp_spry.pubsub.redis_names import ClusterNames, RedisNames
from tests.e2e.helpers import ServerProcess
from tests.support.clusterproc import ClusterNode, RedisClusterProcess, host_binds, key_slot
from tests.support.polling import eventually
from tests.support.procs import HOST, free_port

from .backends import Cluster
from .conftest import StartExample, new_cluster
from .helpers import (
    CHANNEL_PREFIX,
    IO_TIMEOUT,
    LOST,
    RECONNECTED,
    Member,
    Peer,
    pubsub_app,
    wait_numsub,
    warning_lines,
    ws_url,
)

NAMES = ClusterNames(CHANNEL_PREFIX.encode())
INTERVAL = 0.02  # one message every 20 ms
RESUME_TIMEOUT = 20.0
#: A fourth "host" for the master added to the running cluster.
FOURTH_HOST = "127.0.0.4"


Examples = tuple[Cluster, ServerProcess, ServerProcess]


@pytest.fixture
def cluster() -> Iterator[RedisClusterProcess]:
    running = new_cluster()
    running.start()
    try:
        yield running
    finally:
        running.cleanup()


@pytest.fixture
async def examples(
    cluster: RedisClusterProcess, start_example: StartExample
) -> AsyncIterator[tuple[Cluster, ServerProcess, ServerProcess]]:
    """Example processes A and B on the cluster, both brokers on every shard."""
    backend = Cluster(cluster)
    a = start_example("A", cluster.url)
    b = start_example("B", cluster.url)
    await eventually(lambda: backend.brokers_connected() >= 2, what="both brokers on every shard")
    yield backend, a, b
    for name, proc in (("A", a), ("B", b)):
        assert "Traceback" not in proc.log(), f"{name} logged a traceback:\n{proc.log()}"


def room_channel(room: str) -> str:
    return f"{CHANNEL_PREFIX}room:{room}"


def room_slot(room: str) -> int:
    return key_slot(NAMES.channel(f"room:{room}"))


def room_on(cluster: RedisClusterProcess, node: ClusterNode, stem: str) -> str:
    """A room name whose topic lives on ``node``."""
    for n in range(10_000):
        room = f"{stem}{n}"
        if cluster.owner(room_slot(room)) == node:
            return room
    raise AssertionError(f"no room on {node}")


@dataclass
class Stream:
    """``sender`` sends "0", "1", … every INTERVAL until stopped."""

    sender: Member
    sent: int = 0
    stopped: bool = False
    sent_at: list[float] = field(default_factory=list)

    async def run(self) -> None:
        while not self.stopped:
            await self.sender.send(str(self.sent))
            self.sent += 1
            self.sent_at.append(time.monotonic())
            await asyncio.sleep(INTERVAL)


def numbers(member: Member, sender: str) -> list[int]:
    return [int(text) for text in member.texts_from(sender)]


@contextlib.asynccontextmanager
async def streaming(sender: Member) -> AsyncIterator[Stream]:
    """``sender`` streams numbers for the length of the ``async with`` block."""
    stream = Stream(sender)
    task = asyncio.get_running_loop().create_task(stream.run())
    try:
        yield stream
    finally:
        stream.stopped = True
        await task


def no_outage_logged(*logs: str) -> None:
    for log in logs:
        assert warning_lines(log, LOST) == [], log


async def test_a_slot_moved_while_messages_flow_loses_and_doubles_nothing(
    examples: Examples,
    cluster: RedisClusterProcess,
    http: aiohttp.ClientSession,
) -> None:
    backend, proc_a, proc_b = examples
    room = "moving"
    sender = await Member.join(http, proc_a.port, room, "a1")
    receiver = await Member.join(http, proc_b.port, room, "b1")
    await wait_numsub(backend, room_channel(room), 2)
    src = cluster.owner(room_slot(room))
    dst = next(node for node in cluster.nodes if node != src)

    async with streaming(sender) as stream:
        await eventually(lambda: len(numbers(receiver, "a1")) >= 10, what="a warm-up")
        moved_at = stream.sent
        await asyncio.to_thread(cluster.migrate_slot, room_slot(room), dst)
        await eventually(
            lambda: stream.sent >= moved_at + 50 and len(numbers(receiver, "a1")) > moved_at + 20,
            timeout=RESUME_TIMEOUT,
            what=lambda: f"messages after the move; b1 has {len(numbers(receiver, 'a1'))}",
        )
    await eventually(
        lambda: len(numbers(receiver, "a1")) >= stream.sent,
        timeout=RESUME_TIMEOUT,
        what=lambda: f"all {stream.sent}; b1 has {len(numbers(receiver, 'a1'))}",
    )
    await asyncio.sleep(0.3)  # nothing more (no duplicate) may follow
    assert numbers(receiver, "a1") == list(range(stream.sent))
    # Both processes now subscribe the room on its new shard, and only there.
    assert cluster.owner(room_slot(room)) == dst
    await wait_numsub(backend, room_channel(room), 2)
    assert NAMES.channel(f"room:{room}") not in cluster.shard_channels(src)
    # A moved slot is not an outage.
    no_outage_logged(proc_a.log(), proc_b.log())


async def test_messages_sent_while_a_slot_is_half_moved_wait_and_arrive_once_in_order(
    examples: Examples, cluster: RedisClusterProcess, http: aiohttp.ClientSession
) -> None:
    backend, proc_a, proc_b = examples
    room = "halfway"
    sender = await Member.join(http, proc_a.port, room, "a1")
    receiver = await Member.join(http, proc_b.port, room, "b1")
    await wait_numsub(backend, room_channel(room), 2)
    for text in ("0", "1"):
        await sender.send(text)
    await eventually(lambda: numbers(receiver, "a1") == [0, 1], what="two before the move")
    slot = room_slot(room)
    src = cluster.owner(slot)
    dst = next(node for node in cluster.nodes if node != src)
    # The stream (history) moves, the meta hash stays: the publish script's keys
    # are split across two nodes, so the source answers TRYAGAIN until it ends.
    stream_key = NAMES.keys(f"room:{room}", b"stream")[0]
    await asyncio.to_thread(cluster.begin_migration, slot, dst, [stream_key])
    held = [str(n) for n in range(2, 12)]
    for text in held:
        await sender.send(text)
    await asyncio.sleep(1.0)
    during = numbers(receiver, "a1")
    await asyncio.to_thread(cluster.finish_migration, slot)
    await eventually(
        lambda: len(numbers(receiver, "a1")) >= 12,
        timeout=RESUME_TIMEOUT,
        what=lambda: f"the held messages; b1 has {numbers(receiver, 'a1')}",
    )
    await asyncio.sleep(0.3)
    assert during == [0, 1], "a message was applied while its keys were split"
    assert numbers(receiver, "a1") == list(range(12))
    assert len([m for m in sender.received if m.get("type") == "ack"]) >= 12


async def test_a_shard_that_restarts_resumes_by_itself_and_the_others_never_stop(
    cluster: RedisClusterProcess, start_example: StartExample, http: aiohttp.ClientSession
) -> None:
    backend = Cluster(cluster)
    proc_a = start_example("A", cluster.url)
    proc_b = start_example("B", cluster.url)
    await eventually(lambda: backend.brokers_connected() >= 2, what="both brokers up")
    down, up = cluster.nodes[0], cluster.nodes[1]
    room_down, room_up = room_on(cluster, down, "down"), room_on(cluster, up, "up")
    a_up = await Member.join(http, proc_a.port, room_up, "a1")
    b_up = await Member.join(http, proc_b.port, room_up, "b1")
    b_old = await Member.join(http, proc_b.port, room_down, "b-down")
    await wait_numsub(backend, room_channel(room_up), 2)

    cluster.kill(down)
    await eventually(
        lambda: bool(warning_lines(proc_a.log(), LOST) and warning_lines(proc_b.log(), LOST)),
        what="a 'lost' WARNING from both",
    )
    # The other shards' topics never stop: a stream on `up` while `down` is down.
    async with streaming(a_up) as stream:
        await eventually(
            lambda: len(numbers(b_up, "a1")) >= 30,
            timeout=RESUME_TIMEOUT,
            what=lambda: f"b1 receiving on {room_up} during the outage: {numbers(b_up, 'a1')}",
        )
    await eventually(lambda: len(numbers(b_up, "a1")) >= stream.sent, what="the rest")
    assert numbers(b_up, "a1") == list(range(stream.sent))
    # Joining a room of the shard that is down: 1013 (try again later), nothing hangs.
    refused = await http.ws_connect(f"http://{HOST}:{proc_a.port}/rooms/{room_down}?name=late")
    first = await refused.receive(timeout=IO_TIMEOUT)
    assert (first.type, first.data) == (aiohttp.WSMsgType.CLOSE, 1013), first
    await refused.close()

    await asyncio.to_thread(cluster.restart, down)  # empty: its history is gone
    for proc in (proc_a, proc_b):
        await eventually(
            lambda: bool(warning_lines(proc.log(), RECONNECTED)),  # noqa: B023
            timeout=RESUME_TIMEOUT,
            what=lambda: f"a 'reconnected' WARNING:\n{proc.log()}",  # noqa: B023
        )
        lost = warning_lines(proc.log(), LOST)
        # One outage line, naming the shard that was down (and no other).
        assert len(lost) == 1, lost
        assert f"shard {down.address}" in lost[0], lost
        assert len(warning_lines(proc.log(), RECONNECTED)) == 1
    # Its topics resume by themselves: the member whose history went with the shard
    # is told (1012: reconnect with since), and new members talk across the processes.
    await eventually(lambda: b_old.ws.closed, timeout=RESUME_TIMEOUT, what="b-down told")
    assert b_old.close_code() == 1012
    a_down = await Member.join(http, proc_a.port, room_down, "a-down2")
    b_down = await Member.join(http, proc_b.port, room_down, "b-down2")
    await wait_numsub(backend, room_channel(room_down), 2)
    await a_down.send("back")
    await eventually(lambda: b_down.texts_from("a-down2") == ["back"], what="'back' across")


async def test_a_master_added_to_the_running_cluster_is_found_without_a_restart(
    examples: Examples, cluster: RedisClusterProcess, http: aiohttp.ClientSession
) -> None:
    backend, proc_a, proc_b = examples
    room = "newhome"
    sender = await Member.join(http, proc_a.port, room, "a1")
    receiver = await Member.join(http, proc_b.port, room, "b1")
    await wait_numsub(backend, room_channel(room), 2)
    host = FOURTH_HOST if host_binds(FOURTH_HOST) else HOST

    async with streaming(sender) as stream:
        await eventually(lambda: len(numbers(receiver, "a1")) >= 10, what="a warm-up")
        new = await asyncio.to_thread(cluster.add_master, host, [room_slot(room)])
        # Subscriptions follow the slot to the new master (the old owner dropped
        # them with the slot; the brokers read the new map and subscribe there).
        await eventually(
            lambda: cluster.shard_numsub(NAMES.channel(f"room:{room}")) == 2,
            timeout=RESUME_TIMEOUT,
            what="both processes subscribed on the new master",
        )
        assert cluster.owner(room_slot(room)) == new
        after = stream.sent
        await eventually(
            lambda: len(numbers(receiver, "a1")) > after + 10,
            timeout=RESUME_TIMEOUT,
            what="messages through the new master",
        )
    await eventually(lambda: len(numbers(receiver, "a1")) >= stream.sent, what="all of them")
    await asyncio.sleep(0.3)
    assert numbers(receiver, "a1") == list(range(stream.sent))


async def test_a_cluster_unreachable_at_start_logs_once_and_local_delivery_goes_on(
    http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    """No cluster at all: the app starts, its sessions talk locally, one WARNING says so,
    and messages for other processes wait (bounded) and are counted at close."""
    app = pubsub_app(RedisClusterBroker(f"redis+cluster://{HOST}:{free_port()}"))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    port = int(runner.addresses[0][1])
    try:
        sender = await Peer.connect(http, ws_url(port, "t"), "sender")
        receiver = await Peer.connect(http, ws_url(port, "t"), "receiver")
        await sender.send_command(topic="t", data="local")
        await receiver.wait_count(1)
        assert receiver.data == ["local"]
        await sender.close()
        await receiver.close()
    finally:
        await runner.cleanup()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len([w for w in warnings if "cannot reach" in w]) == 1, warnings
    assert any("1 message(s) that never had a shard" in w for w in warnings), warnings


async def test_the_single_node_broker_on_a_cluster_node_says_to_use_redis_cluster(
    cluster: RedisClusterProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """``redis://`` at a cluster node: a topic with history on another node's slot gets
    ``MOVED``; its ack fails and one ERROR names ``redis+cluster://``, not a silent loss."""
    first = cluster.nodes[0]
    names = RedisNames(CHANNEL_PREFIX.encode())
    topic = next(
        f"h:{n}"
        for n in range(1000)
        if cluster.owner(key_slot(names.keys(f"h:{n}", b"meta")[0])) != first
    )
    app = web.Application()
    spry = Spry(app, broker=RedisBroker(f"redis://{first.host}:{first.port}/0"))
    spry.history("h:", size=10, ttl=60)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        with pytest.raises(ConnectionError, match=r"use redis\+cluster://"):
            await asyncio.wait_for(spry.publish(app, topic, {"n": 1}, ack=True), IO_TIMEOUT)
    finally:
        await runner.cleanup()
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("answered MOVED" in e and "redis+cluster://" in e for e in errors), errors


async def test_a_message_with_history_held_for_want_of_a_cluster_fails_its_ack_at_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Published (with ``ack``) while no shard is known: it waits; closing the app
    first fails the ack with the reason and counts it in a WARNING, never silently."""
    app = web.Application()
    spry = Spry(app, broker=RedisClusterBroker(f"redis+cluster://{HOST}:{free_port()}"))
    spry.history("h:", size=10, ttl=60)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        ack = asyncio.ensure_future(spry.publish(app, "h:held", {"n": 1}, ack=True))
        await asyncio.sleep(0.2)
        assert not ack.done(), "the ack must wait for a shard"
    finally:
        await runner.cleanup()
    with pytest.raises(ConnectionError, match="closed before a shard had it"):
        await asyncio.wait_for(ack, IO_TIMEOUT)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("1 message(s) that never had a shard" in w for w in warnings), warnings
