"""A Redis crash and restart under two real example_app processes and a steady message stream.

Rooms keep history, so the promise is stronger than "resumes by itself": with
``--appendonly yes`` every member ends with every message exactly once, in
order (the processes catch up from the history, the publisher retries what
Redis did not take); without persistence the history is gone, and every member
is *told* (closed with 1012, then ``recovered: false`` on its way back), never
left with a silent gap.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field

import aiohttp

from tests.support.polling import eventually
from tests.support.redisproc import RedisProcess

from .backends import Backend
from .conftest import StartExample, TwoExamples
from .helpers import (
    CHANNEL_PREFIX,
    LOST,
    RECONNECTED,
    Member,
    line_time,
    wait_numsub,
    wait_subscriber_connections,
    warning_lines,
)

ROOM = "outage"
CHANNEL = f"{CHANNEL_PREFIX}room:{ROOM}"
INTERVAL = 0.05  # one message from a1 every 50 ms
OUTAGE = 1.5  # seconds between the SIGKILL and the restart
RESUME_TIMEOUT = 15.0  # bound for b1 to get messages again after the restart
GAP = "cannot fill the gap"
RECONNECTED_RE = re.compile(
    r"after (?P<took>[\d.]+)s; (?P<subs>\d+) subscription\(s\) restored, "
    r"(?P<dropped>\d+) message\(s\) published meanwhile were dropped"
)


@dataclass
class Stream:
    """a1 sends "0", "1", ... every INTERVAL seconds until stopped."""

    member: Member
    sent_at: list[float] = field(default_factory=list)
    stopped: bool = False

    @property
    def count(self) -> int:
        return len(self.sent_at)

    async def run(self) -> None:
        while not self.stopped:
            await self.member.send(str(self.count))
            self.sent_at.append(time.monotonic())
            await asyncio.sleep(INTERVAL)


def numbered(member: Member) -> list[tuple[int, float]]:
    """(number, arrival time) of each of a1's messages this member got, in arrival order."""
    return [
        (int(message["text"]), arrival)
        for message, arrival in zip(member.received, member.arrivals, strict=True)
        if message.get("type") == "message" and message.get("name") == "a1"
    ]


def numbers(member: Member) -> list[int]:
    return [n for n, _ in numbered(member)]


def spans(values: list[int]) -> str:
    """``[3, 4, 5, 9]`` → ``"#3-#5, #9"``; ``[]`` → ``"none"``."""
    runs: list[list[int]] = []
    for value in values:
        if runs and value == runs[-1][-1] + 1:
            runs[-1].append(value)
        else:
            runs.append([value])
    return ", ".join(f"#{r[0]}-#{r[-1]}" if len(r) > 1 else f"#{r[0]}" for r in runs) or "none"


async def test_redis_crash_with_persistence_loses_and_duplicates_nothing_for_any_member(
    persistent_redis: RedisProcess, start_example: StartExample, http: aiohttp.ClientSession
) -> None:
    redis = persistent_redis
    proc_a = start_example("A", redis.url)
    proc_b = start_example("B", redis.url)
    await wait_subscriber_connections(redis, 2)
    a1 = await Member.join(http, proc_a.port, ROOM, "a1")
    a2 = await Member.join(http, proc_a.port, ROOM, "a2")
    b1 = await Member.join(http, proc_b.port, ROOM, "b1")
    epoch = a1.welcome["epoch"]
    await wait_numsub(redis, CHANNEL, 2)

    stream = Stream(a1)
    sender = asyncio.get_running_loop().create_task(stream.run())
    try:
        await eventually(lambda: len(numbers(b1)) >= 5 and len(numbers(a2)) >= 5, what="a warm-up")

        # -- Redis crashes ---------------------------------------------------------
        kill_wall, kill_at = time.time(), time.monotonic()
        sent_before_kill = stream.count
        redis.kill()
        await eventually(
            lambda: bool(warning_lines(proc_a.log(), LOST) and warning_lines(proc_b.log(), LOST)),
            what=lambda: f"a 'lost' WARNING from both:\n{proc_a.log()}\n{proc_b.log()}",
        )
        await asyncio.sleep(max(0.0, kill_at + OUTAGE - time.monotonic()))

        # -- Redis comes back on the same port, with its append-only file ------------
        restart_at = time.monotonic()
        sent_before_restart = stream.count
        await asyncio.to_thread(redis.start)
        ready_at = time.monotonic()
        await eventually(
            lambda: any(arrival > restart_at for _, arrival in numbered(b1)),
            timeout=RESUME_TIMEOUT,
            what="b1 receiving again after the restart",
        )
        first_n, first_arrival = next((n, t) for n, t in numbered(b1) if t > restart_at)
        await eventually(
            lambda: bool(
                warning_lines(proc_a.log(), RECONNECTED)
                and warning_lines(proc_b.log(), RECONNECTED)
            ),
            timeout=RESUME_TIMEOUT,
            what=lambda: f"a 'reconnected' WARNING from both:\n{proc_a.log()}\n{proc_b.log()}",
        )
        resumed = stream.count
        await eventually(lambda: numbers(b1)[-1:] >= [resumed + 5], what="b1 keeping up again")
    finally:
        stream.stopped = True
        await asyncio.wait_for(sender, 5.0)
    last = stream.count - 1
    for member in (a2, b1):
        await eventually(
            lambda: numbers(member)[-1:] == [last],  # noqa: B023
            timeout=RESUME_TIMEOUT,
            what=lambda: f"{member.name} getting the last message: {numbers(member)[-5:]}",  # noqa: B023
        )
    await eventually(
        lambda: len([m for m in a1.received if m.get("type") == "ack"]) == stream.count,
        what="a1's ack for each of its messages",
    )
    await asyncio.sleep(0.2)  # nothing more (no duplicate) may follow

    # Every member, in either process: every message exactly once, in order, in one
    # epoch (the history survived), numbered without a hole; a1 an ack for each.
    for member in (a2, b1):
        assert numbers(member) == list(range(stream.count)), member.name
        assert {m["epoch"] for m in member.messages()} == {epoch}
        offsets = member.offsets()
        assert offsets == list(range(offsets[0], offsets[0] + stream.count)), member.name
        assert member.close_code() is None and member.other_frames == []
    acks = [m["offset"] for m in a1.received if m.get("type") == "ack"]
    assert acks == a2.offsets() == b1.offsets()
    assert a1.chat() == []  # the sender never gets its own messages

    reports = {}
    for name, proc in (("A", proc_a), ("B", proc_b)):
        log = proc.log()
        lost, back = warning_lines(log, LOST), warning_lines(log, RECONNECTED)
        assert "Traceback" not in log and GAP not in log, log
        assert len(lost) == 1 and len(back) == 1, (name, lost, back)
        match = RECONNECTED_RE.search(back[0])
        assert match is not None and match["dropped"] == "0", back[0]
        reports[name] = (lost[0], back[0], match)

    for member in (a1, a2, b1):
        await member.leave()
    await wait_numsub(redis, CHANNEL, 0)

    # The timeline, in seconds from the SIGKILL (log lines carry millisecond times).
    first_a2 = next((n, t) for n, t in numbered(a2) if t > restart_at)
    events: list[tuple[float, str]] = [
        (0.0, f"redis-server (--appendonly yes) SIGKILLed (a1 had sent {sent_before_kill})"),
        (restart_at - kill_at, "redis-server restarted on the same port"),
        (ready_at - kill_at, "redis-server answers PING again"),
        (
            first_arrival - kill_at,
            f"b1's first message after the restart: #{first_n} (sent at "
            f"{stream.sent_at[first_n] - kill_at:+.3f}s)",
        ),
        (
            first_a2[1] - kill_at,
            f"a2's first message after the restart: #{first_a2[0]} (sent at "
            f"{stream.sent_at[first_a2[0]] - kill_at:+.3f}s)",
        ),
    ]
    for name, (lost_line, back_line, match) in reports.items():
        cause = lost_line.split(" (", 1)[1].split(")", 1)[0] if " (" in lost_line else ""
        events.append((line_time(lost_line) - kill_wall, f"{name}: Redis lost ({cause[:45]})"))
        events.append(
            (
                line_time(back_line) - kill_wall,
                f"{name}: Redis broker reconnected after {match['took']}s; "
                f"{match['dropped']} dropped",
            )
        )
    print(f"\nRedis outage timeline (a1 sends every {INTERVAL * 1000:.0f} ms; from the SIGKILL):")
    for moment, text in sorted(events):
        print(f"  {moment:+7.3f}s  {text}")
    missed = {m.name: spans(sorted(set(range(stream.count)) - set(numbers(m)))) for m in (a2, b1)}
    print(
        f"  a1 sent {stream.count} messages ({sent_before_restart - sent_before_kill} during the "
        f"outage) and got {len(acks)} acks; a2 got {len(numbers(a2))}, missed {missed['a2']}; "
        f"b1 got {len(numbers(b1))}, missed {missed['b1']}; duplicates: none; "
        f"b1 resumed {first_arrival - ready_at:.3f}s after Redis answered"
    )


async def test_first_message_after_a_persistent_redis_restart_arrives_and_one_outage_is_logged(
    persistent_redis: RedisProcess, start_example: StartExample, http: aiohttp.ClientSession
) -> None:
    redis = persistent_redis
    proc_a = start_example("A", redis.url)
    proc_b = start_example("B", redis.url)
    await wait_subscriber_connections(redis, 2)
    a1 = await Member.join(http, proc_a.port, ROOM, "a1")
    b1 = await Member.join(http, proc_b.port, ROOM, "b1")
    await a1.send("before")
    await eventually(lambda: b1.texts_from("a1") == ["before"], what="b1 getting 'before'")

    redis.kill()
    await eventually(
        lambda: bool(warning_lines(proc_a.log(), LOST) and warning_lines(proc_b.log(), LOST)),
        what="a 'lost' WARNING from both",
    )
    await asyncio.sleep(0.5)
    await asyncio.to_thread(redis.start)
    await eventually(
        lambda: bool(
            warning_lines(proc_a.log(), RECONNECTED) and warning_lines(proc_b.log(), RECONNECTED)
        ),
        timeout=RESUME_TIMEOUT,
        what="a 'reconnected' WARNING from both",
    )
    await wait_numsub(redis, CHANNEL, 2)  # both processes subscribe the room again

    await a1.send("after")  # nothing was published during the outage
    try:
        await eventually(
            lambda: b1.texts_from("a1") == ["before", "after"],
            timeout=3.0,
            what="b1 getting 'after'",
        )
        assert b1.offsets() == [1, 2]
        await asyncio.sleep(0.3)
        for proc in (proc_a, proc_b):
            assert len(warning_lines(proc.log(), LOST)) == 1, proc.log()
            assert len(warning_lines(proc.log(), RECONNECTED)) == 1, proc.log()
    finally:
        for member in (a1, b1):
            await member.leave()
        await wait_numsub(redis, CHANNEL, 0)


async def test_redis_restart_without_persistence_tells_every_member_recovered_false(
    backend: Backend, two_examples: TwoExamples, http: aiohttp.ClientSession
) -> None:
    proc_a, proc_b = two_examples
    a1 = await Member.join(http, proc_a.port, ROOM, "a1")
    b1 = await Member.join(http, proc_b.port, ROOM, "b1")
    old_epoch = a1.welcome["epoch"]
    await a1.send("before")
    await eventually(lambda: b1.texts_from("a1") == ["before"], what="b1 getting 'before'")

    backend.kill(CHANNEL)  # on a cluster: the shard of the room
    await eventually(
        lambda: bool(warning_lines(proc_a.log(), LOST) and warning_lines(proc_b.log(), LOST)),
        what="a 'lost' WARNING from both",
    )
    await asyncio.to_thread(backend.restart)  # empty: the history is gone
    # Each process finds its position's epoch gone and closes its members with 1012.
    for member in (a1, b1):
        await eventually(
            lambda: member.ws.closed,  # noqa: B023
            timeout=RESUME_TIMEOUT,
            what=f"{member.name} closed after the history was lost",
        )
        assert member.close_code() == 1012, member.name
    for proc in (proc_a, proc_b):
        assert len([line for line in proc.log().splitlines() if GAP in line]) == 1, proc.log()

    # They come back with their positions and are told: recovered false, a new epoch.
    back_a = await Member.join(http, proc_a.port, ROOM, "a1", since=a1.position())
    back_b = await Member.join(http, proc_b.port, ROOM, "b1", since=b1.position())
    for member in (back_a, back_b):
        assert member.welcome["recovered"] is False
        assert member.welcome["epoch"] != old_epoch
    await back_a.send("after")
    await eventually(lambda: back_b.texts_from("a1") == ["after"], what="b1 getting 'after'")
    assert back_b.messages()[0]["epoch"] == back_b.welcome["epoch"]
    for member in (a1, b1, back_a, back_b):
        await member.leave()
    await wait_numsub(backend, CHANNEL, 0)
