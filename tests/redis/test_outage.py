"""A Redis crash and restart under two real example_app processes and a steady message stream."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field

import aiohttp

from tests.support.polling import eventually
from tests.support.redisproc import RedisProcess

from .conftest import StartExample
from .helpers import (
    CHANNEL_PREFIX,
    LOST,
    RECONNECTED,
    Member,
    line_time,
    until_every_member_listens,
    wait_numsub,
    wait_subscriber_connections,
    warning_lines,
)

ROOM = "outage"
CHANNEL = f"{CHANNEL_PREFIX}room:{ROOM}"
INTERVAL = 0.05  # one message from a1 every 50 ms
OUTAGE = 1.5  # seconds between the SIGKILL and the restart
RESUME_TIMEOUT = 15.0  # bound for b1 to get messages again after the restart
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
        if message.get("name") == "a1"
    ]


def spans(values: list[int]) -> str:
    """``[3, 4, 5, 9]`` → ``"#3-#5, #9"``; ``[]`` → ``"none"``."""
    runs: list[list[int]] = []
    for value in values:
        if runs and value == runs[-1][-1] + 1:
            runs[-1].append(value)
        else:
            runs.append([value])
    return ", ".join(f"#{r[0]}-#{r[-1]}" if len(r) > 1 else f"#{r[0]}" for r in runs) or "none"


def numbers(member: Member) -> list[int]:
    return [n for n, _ in numbered(member)]


async def test_redis_outage_keeps_local_delivery_and_cross_process_resumes_by_itself(
    redis_server: RedisProcess, start_example: StartExample, http: aiohttp.ClientSession
) -> None:
    proc_a = start_example("A", redis_server.url)
    proc_b = start_example("B", redis_server.url)
    await wait_subscriber_connections(redis_server, 2)
    a1 = await Member.join(http, proc_a.port, ROOM, "a1")
    a2 = await Member.join(http, proc_a.port, ROOM, "a2")
    b1 = await Member.join(http, proc_b.port, ROOM, "b1")
    await wait_numsub(redis_server, CHANNEL, 2)
    await until_every_member_listens(http, [proc_a.port, proc_b.port], ROOM, [a1, a2, b1])

    stream = Stream(a1)
    sender = asyncio.get_running_loop().create_task(stream.run())
    try:
        await eventually(lambda: len(numbers(b1)) >= 5 and len(numbers(a2)) >= 5, what="a warm-up")

        # -- Redis crashes ---------------------------------------------------------
        kill_wall, kill_at = time.time(), time.monotonic()
        sent_before_kill = stream.count
        redis_server.kill()
        await eventually(
            lambda: bool(warning_lines(proc_a.log(), LOST) and warning_lines(proc_b.log(), LOST)),
            what=lambda: f"a 'lost' WARNING from both:\n{proc_a.log()}\n{proc_b.log()}",
        )
        await asyncio.sleep(max(0.0, kill_at + OUTAGE - time.monotonic()))

        # Local delivery never stopped: a2 has every message a1 sent so far.
        sent_in_outage = stream.count
        await eventually(
            lambda: len(numbers(a2)) >= sent_in_outage,
            timeout=2.0,
            what=lambda: (
                f"a2 has {len(numbers(a2))} of {sent_in_outage} messages during the outage"
            ),
        )
        assert numbers(a2)[:sent_in_outage] == list(range(sent_in_outage))
        b1_in_outage = [n for n, arrival in numbered(b1) if arrival > kill_at]
        assert b1_in_outage == [], "b1 got messages while Redis was down"

        # -- Redis comes back on the same port (empty: nothing persisted) ------------
        restart_at = time.monotonic()
        sent_before_restart = stream.count
        await asyncio.to_thread(redis_server.start)
        ready_at = time.monotonic()

        # No client does anything: b1 starts receiving again by itself.
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
        # A few more after the recovery, then stop the stream.
        resumed = stream.count
        await eventually(lambda: numbers(b1)[-1:] >= [resumed + 5], what="b1 keeping up again")
    finally:
        stream.stopped = True
        await asyncio.wait_for(sender, 5.0)
    last = stream.count - 1
    await eventually(lambda: numbers(a2)[-1:] == [last], what="a2 getting the last message")
    await eventually(lambda: numbers(b1)[-1:] == [last], what="b1 getting the last message")
    await asyncio.sleep(0.2)  # nothing more (no duplicate) may follow

    # a2 (same process as a1): every message exactly once, in order, outage or not.
    assert numbers(a2) == list(range(stream.count))
    assert a1.chat() == []  # the sender never gets its own messages
    # b1 (other process): in order and never twice; everything before the crash,
    # nothing while Redis was down, then everything from its first message after
    # the restart on, but for messages process A reports it dropped after recovering.
    got = numbers(b1)
    before = [n for n, arrival in numbered(b1) if arrival < kill_at]
    after = [n for n, arrival in numbered(b1) if arrival > restart_at]
    assert got == before + after
    assert got == sorted(set(got)), "b1 got a message twice or out of order"
    assert before == list(range(len(before))) and len(before) >= sent_before_kill - 2
    assert after[-1] == last
    missed = sorted(set(range(stream.count)) - set(got))
    missed_after_resuming = sorted(set(range(first_n, last + 1)) - set(after))

    # One WARNING when the outage starts and one when it ends, per process.
    reports = {}
    for name, proc in (("A", proc_a), ("B", proc_b)):
        log = proc.log()
        lost, back = warning_lines(log, LOST), warning_lines(log, RECONNECTED)
        assert "Traceback" not in log, log
        assert lost and back and line_time(lost[0]) <= line_time(back[0]), log
        matches = [RECONNECTED_RE.search(line) for line in back]
        assert all(matches), back
        assert matches[0]["subs"] == "1", back[0]  # type: ignore[index]
        reports[name] = (lost, back, matches)
    # Exactly one pair per process: the outage, not each message, is logged.
    for name in ("A", "B"):
        lost, back, _ = reports[name]
        assert len(lost) == 1 and len(back) == 1, (name, lost, back)
    assert reports["B"][2][0]["dropped"] == "0"  # type: ignore[index]
    # Everything b1 missed after resuming is what A says it dropped (at most once).
    dropped_by_a = int(reports["A"][2][0]["dropped"])  # type: ignore[index]
    assert len(missed_after_resuming) <= dropped_by_a, (missed_after_resuming, reports["A"][1])

    for member in (a1, a2, b1):
        await member.leave()
    await wait_numsub(redis_server, CHANNEL, 0)

    # The timeline, in seconds from the SIGKILL (log lines carry millisecond times).
    events: list[tuple[float, str]] = [
        (0.0, f"redis-server SIGKILLed (a1 had sent {sent_before_kill} messages)"),
        (restart_at - kill_at, "redis-server restarted on the same port"),
        (ready_at - kill_at, "redis-server answers PING again"),
        (
            first_arrival - kill_at,
            f"b1's first message after the restart: #{first_n} (sent at "
            f"{stream.sent_at[first_n] - kill_at:+.3f}s)",
        ),
    ]
    for name in ("A", "B"):
        lost, back, matches = reports[name]
        for line in lost:
            text = line.split(": ", 1)[1].split(" to redis://")[0]
            cause = line.split(" (", 1)[1].split(")", 1)[0] if " (" in line else ""
            events.append((line_time(line) - kill_wall, f"{name}: {text} ({cause[:45]})"))
        for line, match in zip(back, matches, strict=True):
            assert match is not None
            events.append(
                (
                    line_time(line) - kill_wall,
                    f"{name}: Redis broker reconnected after {match['took']}s; "
                    f"{match['subs']} subscription(s) restored, {match['dropped']} dropped",
                )
            )
    print(f"\nRedis outage timeline (a1 sends every {INTERVAL * 1000:.0f} ms; from the SIGKILL):")
    for moment, text in sorted(events):
        print(f"  {moment:+7.3f}s  {text}")
    print(
        f"  a1 sent {stream.count} messages ({sent_before_restart - sent_before_kill} during the "
        f"outage); a2 got {len(numbers(a2))}; b1 got {len(got)}, missed {spans(missed)} "
        f"({spans(missed_after_resuming)} after resuming); b1 resumed "
        f"{first_arrival - ready_at:.3f}s after Redis answered"
    )


async def test_first_message_after_redis_restart_is_delivered_and_one_outage_is_logged(
    redis_server: RedisProcess, start_example: StartExample, http: aiohttp.ClientSession
) -> None:
    proc_a = start_example("A", redis_server.url)
    proc_b = start_example("B", redis_server.url)
    await wait_subscriber_connections(redis_server, 2)
    a1 = await Member.join(http, proc_a.port, ROOM, "a1")
    b1 = await Member.join(http, proc_b.port, ROOM, "b1")
    await wait_numsub(redis_server, CHANNEL, 2)
    await until_every_member_listens(http, [proc_a.port, proc_b.port], ROOM, [a1, b1])
    await a1.send("before")
    await eventually(lambda: b1.texts_from("a1") == ["before"], what="b1 getting 'before'")

    redis_server.kill()
    await eventually(
        lambda: bool(warning_lines(proc_a.log(), LOST) and warning_lines(proc_b.log(), LOST)),
        what="a 'lost' WARNING from both",
    )
    await asyncio.sleep(0.5)
    await asyncio.to_thread(redis_server.start)
    await eventually(
        lambda: bool(
            warning_lines(proc_a.log(), RECONNECTED) and warning_lines(proc_b.log(), RECONNECTED)
        ),
        timeout=RESUME_TIMEOUT,
        what="a 'reconnected' WARNING from both",
    )
    await wait_numsub(redis_server, CHANNEL, 2)  # both processes subscribe the room again

    await a1.send("after")  # nothing was published during the outage
    try:
        await eventually(
            lambda: b1.texts_from("a1") == ["before", "after"],
            timeout=3.0,
            what="b1 getting 'after'",
        )
        await asyncio.sleep(0.3)
        for proc in (proc_a, proc_b):
            assert len(warning_lines(proc.log(), LOST)) == 1, proc.log()
            assert len(warning_lines(proc.log(), RECONNECTED)) == 1, proc.log()
    finally:
        for member in (a1, b1):
            await member.leave()
        await wait_numsub(redis_server, CHANNEL, 0)
