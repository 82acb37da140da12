"""Two real ``python -m example_app`` processes sharing chat rooms through one ``redis-server``."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time

import aiohttp
import pytest

from tests.support.redisproc import RedisProcess

from .backends import Backend
from .conftest import StartExample
from .helpers import (
    CHANNEL_PREFIX,
    Member,
    exchange_and_check,
    until_every_member_listens,
    wait_numsub,
    wait_subscriber_connections,
)

ROOM = "lobby"
CHANNEL = f"{CHANNEL_PREFIX}room:{ROOM}"


async def test_two_example_processes_share_a_room_exactly_once(
    backend: Backend, start_example: StartExample, http: aiohttp.ClientSession
) -> None:
    one = start_example("one", backend.url)
    two = start_example("two", backend.url)
    await wait_subscriber_connections(backend, 2)
    members = [
        await Member.join(http, one.port, ROOM, "a1"),
        await Member.join(http, one.port, ROOM, "a2"),
        await Member.join(http, two.port, ROOM, "b1"),
        await Member.join(http, two.port, ROOM, "b2"),
    ]
    await wait_numsub(backend, CHANNEL, 2)  # one subscription per process
    await until_every_member_listens(http, [one.port, two.port], ROOM, members)

    await exchange_and_check(members, per_member=5)

    for server, here in ((one, 2), (two, 2)):
        async with http.get(f"http://127.0.0.1:{server.port}/rooms/{ROOM}") as response:
            assert (await response.json())["members_here"] == here
    for member in members:
        await member.leave()
    await wait_numsub(backend, CHANNEL, 0)
    for server in (one, two):
        assert f"Chat rooms broker: {backend.broker()!r}" in server.log()
        assert " ERROR " not in server.log() and "Traceback" not in server.log(), server.log()


async def test_example_on_redis_exits_on_sigint_with_a_member_connected(
    redis_server: RedisProcess, start_example: StartExample, http: aiohttp.ClientSession
) -> None:
    server = start_example("sigint", redis_server.url)
    await wait_subscriber_connections(redis_server, 1)
    member = await Member.join(http, server.port, ROOM, "m")
    await wait_numsub(redis_server, CHANNEL, 1)

    server.proc.send_signal(signal.SIGINT)
    started = time.monotonic()
    try:
        await asyncio.to_thread(server.proc.wait, 5.0)
    except subprocess.TimeoutExpired:
        server.proc.kill()  # SIGINT was sent; SIGKILL this process, by PID
        server.proc.wait(timeout=10)
        pytest.fail(
            f"still running {time.monotonic() - started:.1f}s after SIGINT:\n{server.log()}"
        )
    finally:
        await member.leave()
    assert server.proc.returncode == 0
