"""Recovery and presence across real example_app processes sharing one real ``redis-server``.

Each test proves a row of the README's delivery-semantics table for topics with
history: a member that comes back with ``since=`` gets exactly what it missed,
in order, then live messages, whichever process it comes back to, even while
messages keep flowing; presence is seen across processes, and a process that
dies has its members leave within the bound.
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from aiohttp_spry.pubsub import redis_scripts
from tests.support.polling import eventually
from tests.support.procs import HOST, stop_process
from tests.support.redisproc import RedisProcess

from .backends import Backend
from .conftest import TwoExamples
from .helpers import CHANNEL_PREFIX, Member, wait_numsub

ROOM = "recovery"
CHANNEL = f"{CHANNEL_PREFIX}room:{ROOM}"
#: The issue's bound for a SIGKILLed process's members to leave (presence_ttl 15 s +
#: one refresh interval of 5 s, by default).
LEAVE_BOUND = 30.0
#: The issue's bound for a clean leave to be seen in another process.
CLEAN_LEAVE_BOUND = 1.0


def assert_exactly_once_in_order(got: list[dict[str, Any]], start: int, end: int) -> None:
    """Message frames with offsets start+1 … end, each once, in order, one epoch."""
    offsets = [m["offset"] for m in got]
    assert offsets == list(range(start + 1, end + 1)), offsets
    assert len({m["epoch"] for m in got}) == 1


async def send_acked(member: Member, texts: list[str]) -> list[int]:
    """Send each text and wait for its ack; return their offsets."""
    acked: list[int] = []
    for text in texts:
        before = len([m for m in member.received if m.get("type") == "ack"])
        await member.send(text)
        await eventually(
            lambda: len([m for m in member.received if m.get("type") == "ack"]) > before,  # noqa: B023
            what=f"{member.name}'s ack for {text!r}",
        )
        acked.append([m for m in member.received if m.get("type") == "ack"][-1]["offset"])
    return acked


async def test_a_member_back_after_50_from_another_process_gets_exactly_those_then_live(
    backend: Backend, two_examples: TwoExamples, http: aiohttp.ClientSession
) -> None:
    proc_a, proc_b = two_examples
    away = await Member.join(http, proc_a.port, ROOM, "away")
    talker = await Member.join(http, proc_b.port, ROOM, "talker")
    await send_acked(talker, ["seen"])
    await eventually(lambda: away.texts_from("talker") == ["seen"], what="away seeing 'seen'")
    since = away.position()
    await away.leave()

    missed = [f"missed {n}" for n in range(50)]
    offsets = await send_acked(talker, missed)
    back = await Member.join(http, proc_a.port, ROOM, "away", since=since)
    assert back.welcome["recovered"] is True
    assert back.welcome["offset"] == offsets[-1]
    await eventually(lambda: len(back.messages()) >= 50, what="the replay of 50")
    await send_acked(talker, ["live"])
    await eventually(lambda: len(back.messages()) >= 51, what="the live message")
    await asyncio.sleep(0.2)  # nothing more (no duplicate) may follow
    assert back.texts_from("talker") == [*missed, "live"]
    start = int(since.rsplit(":", 1)[1])
    assert_exactly_once_in_order(back.messages(), start, offsets[-1] + 1)
    for member in (back, talker):
        await member.leave()
    await wait_numsub(backend, CHANNEL, 0)


async def test_messages_flowing_during_the_replay_arrive_once_in_order(
    backend: Backend, two_examples: TwoExamples, http: aiohttp.ClientSession
) -> None:
    proc_a, proc_b = two_examples
    away = await Member.join(http, proc_a.port, ROOM, "away")
    talker = await Member.join(http, proc_b.port, ROOM, "talker")
    since = away.position()
    await away.leave()
    await send_acked(talker, [f"before {n}" for n in range(50)])

    stop = asyncio.Event()

    async def keep_talking() -> int:
        sent = 0
        while not stop.is_set():
            await talker.send(f"during {sent}")
            sent += 1
            await asyncio.sleep(0.002)
        return sent

    flowing = asyncio.get_running_loop().create_task(keep_talking())
    await asyncio.sleep(0.05)  # messages are flowing when it comes back
    back = await Member.join(http, proc_a.port, ROOM, "away", since=since)
    await eventually(lambda: len(back.texts_from("talker")) >= 60, what="the replay and some live")
    stop.set()
    during = await flowing
    total = 50 + during
    await eventually(lambda: len(back.messages()) >= total, what=f"all {total} messages")
    await asyncio.sleep(0.2)
    assert back.welcome["recovered"] is True
    expected = [f"before {n}" for n in range(50)] + [f"during {n}" for n in range(during)]
    assert back.texts_from("talker") == expected
    assert_exactly_once_in_order(back.messages(), int(since.rsplit(":", 1)[1]), total)
    for member in (back, talker):
        await member.leave()
    await wait_numsub(backend, CHANNEL, 0)


async def test_sigkill_of_a_members_process_and_back_on_the_other_loses_and_doubles_nothing(
    backend: Backend, two_examples: TwoExamples, http: aiohttp.ClientSession
) -> None:
    proc_a, proc_b = two_examples
    victim = await Member.join(http, proc_a.port, ROOM, "victim")
    talker = await Member.join(http, proc_b.port, ROOM, "talker")
    stop = asyncio.Event()
    sent: list[str] = []

    async def keep_talking() -> None:
        while not stop.is_set():
            text = f"t{len(sent)}"
            await talker.send(text)
            sent.append(text)
            await asyncio.sleep(0.01)

    flowing = asyncio.get_running_loop().create_task(keep_talking())
    await eventually(lambda: len(victim.messages()) >= 20, what="victim receiving")
    stop_process(proc_a.proc, signal.SIGKILL)  # by PID: the process the victim is on
    await eventually(lambda: victim.ws.closed, what="the victim's connection dropping")
    since = victim.position()
    await asyncio.sleep(0.2)  # messages it misses while away
    back = await Member.join(http, proc_b.port, ROOM, "victim", since=since)
    assert back.welcome["recovered"] is True
    await asyncio.sleep(0.2)
    stop.set()
    await flowing
    await eventually(
        lambda: [m["text"] for m in victim.messages() + back.messages()][-1:] == sent[-1:],
        what="the last message",
    )
    await asyncio.sleep(0.2)
    texts = [m["text"] for m in victim.messages()]
    seen_before = int(since.rsplit(":", 1)[1]) - victim.welcome["offset"]
    combined = texts[:seen_before] + [m["text"] for m in back.messages()]
    assert combined == sent, "lost or doubled across the SIGKILL"
    offsets = victim.offsets()[:seen_before] + back.offsets()
    assert offsets == list(range(offsets[0], offsets[0] + len(sent)))
    for member in (back, talker):
        await member.leave()


async def test_presence_is_seen_across_processes_and_a_clean_leave_within_a_second(
    backend: Backend, two_examples: TwoExamples, http: aiohttp.ClientSession
) -> None:
    proc_a, proc_b = two_examples
    ann = await Member.join(http, proc_a.port, ROOM, "ann", presence=True)
    bob = await Member.join(http, proc_b.port, ROOM, "bob", presence=True)
    quiet = await Member.join(http, proc_b.port, ROOM, "quiet")  # no presence=1
    assert sorted(m["name"] for m in bob.welcome["members"]) == ["ann", "bob"]
    assert {"id": ann.welcome["you"], "name": "ann"} in bob.welcome["members"]
    await eventually(
        lambda: (
            [m["member"]["name"] for m in ann.received if m.get("type") == "join"]
            == ["bob", "quiet"]
        ),
        what="ann seeing bob and quiet join (from the other process)",
    )
    for port in (proc_a.port, proc_b.port):
        async with http.get(f"http://{HOST}:{port}/rooms/{ROOM}") as response:
            info = await response.json()
        assert info["member_count"] == 3
        assert sorted(m["name"] for m in info["members"]) == ["ann", "bob", "quiet"]

    left_at = time.monotonic()
    await bob.leave()
    await eventually(
        lambda: any(m.get("type") == "leave" for m in ann.received),
        timeout=CLEAN_LEAVE_BOUND,
        what="ann seeing bob leave within a second",
    )
    took = time.monotonic() - left_at
    [leave] = [m for m in ann.received if m.get("type") == "leave"]
    assert leave == {
        "type": "leave",
        "room": ROOM,
        "member": {"id": bob.welcome["you"], "name": "bob"},
    }
    assert [m for m in quiet.received if m.get("type") in ("join", "leave")] == []
    print(f"\nclean leave seen in the other process after {took:.3f}s")
    for member in (ann, quiet):
        await member.leave()


@pytest.mark.timeout(90)
async def test_a_sigkilled_processs_members_leave_within_the_bound(
    backend: Backend, two_examples: TwoExamples, http: aiohttp.ClientSession
) -> None:
    proc_a, proc_b = two_examples
    watcher = await Member.join(http, proc_a.port, ROOM, "watcher", presence=True)
    doomed = [await Member.join(http, proc_b.port, ROOM, f"d{n}") for n in range(3)]
    await eventually(
        lambda: len([m for m in watcher.received if m.get("type") == "join"]) == 3,
        what="the three joins",
    )
    killed_at = time.monotonic()
    stop_process(proc_b.proc, signal.SIGKILL)
    await eventually(
        lambda: len([m for m in watcher.received if m.get("type") == "leave"]) == 3,
        timeout=LEAVE_BOUND,
        interval=0.1,
        what="the SIGKILLed process's members leaving",
    )
    took = time.monotonic() - killed_at
    leaves = {m["member"]["id"] for m in watcher.received if m.get("type") == "leave"}
    assert leaves == {d.welcome["you"] for d in doomed}
    async with http.get(f"http://{HOST}:{proc_a.port}/rooms/{ROOM}") as response:
        info = await response.json()
    assert info["members"] == [{"id": watcher.welcome["you"], "name": "watcher"}]
    print(f"\nSIGKILLed process's 3 members seen leaving after {took:.1f}s (bound {LEAVE_BOUND}s)")
    await watcher.leave()
    for member in doomed:
        await member.leave()


async def test_a_retried_publish_is_applied_once_by_the_script(redis_server: RedisProcess) -> None:
    client = Redis.from_url(redis_server.url)
    try:
        script = client.register_script(redis_scripts.PUBLISH)
        keys = [b"t:{x}:meta", b"t:{x}:stream"]

        async def publish(seq: int, msgid: str) -> list[Any]:
            args: list[bytes | str | int] = [
                b"t:x",
                "node1",
                seq,
                b"o",
                b"{}",
                10,
                60,
                600,
                "epochA",
                msgid,
                100,
            ]
            return list(await script(keys=keys, args=args))

        assert await publish(1, "node1-1") == [b"epochA", 1, 0]
        assert await publish(2, "node1-2") == [b"epochA", 2, 0]
        # The connection broke before the reply: the same message again.
        assert await publish(2, "node1-2") == [b"epochA", 2, 1]
        assert await publish(1, "node1-1") == [b"epochA", 1, 1]
        assert await client.xlen(keys[1]) == 2
        assert await client.hget(keys[0], "offset") == b"2"
        assert await client.ttl(keys[1]) > 0 and await client.ttl(keys[0]) > 60
    finally:
        await client.aclose()
