"""gunicorn with two aiohttp workers: one room across both workers, through Redis."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.helpers import ServerProcess, start_example
from tests.support.optional import require_tool
from tests.support.polling import eventually
from tests.support.procs import HOST, free_port, stop_process, subprocess_env
from tests.support.redisproc import RedisProcess

from .helpers import (
    CHANNEL_PREFIX,
    Member,
    exchange_and_check,
    numsub,
    numsub_reaches,
    until_every_member_listens,
    wait_numsub,
    wait_subscriber_connections,
)

ROOM = "workers"
CHANNEL = f"{CHANNEL_PREFIX}room:{ROOM}"
MAX_MEMBERS = 40
GUNICORN = Path(sys.executable).parent / "gunicorn"


@pytest.fixture
def gunicorn(tmp_path: Path, redis_server: RedisProcess) -> Iterator[ServerProcess]:
    """``gunicorn example_app.main:create_app`` with 2 aiohttp workers on Redis; SIGTERM after."""
    require_tool("gunicorn", GUNICORN.exists(), f"{GUNICORN} missing: pip install gunicorn")
    port = free_port()
    command = [
        str(GUNICORN),
        "example_app.main:create_app",
        "--worker-class",
        "aiohttp.GunicornWebWorker",
        "--workers",
        "2",
        "--bind",
        f"{HOST}:{port}",
        "--graceful-timeout",
        "5",
        "--no-control-socket",
        "--log-level",
        "info",
    ]
    env = subprocess_env({"SPRY_BROKER_URL": redis_server.url})
    server = start_example(tmp_path / "gunicorn.log", env=env, command=command, port=port)
    try:
        yield server
    finally:
        # SIGTERM is gunicorn's graceful stop: the master, by PID; it stops its workers.
        stop_process(server.proc, signal.SIGTERM, timeout=20.0)


async def test_gunicorn_two_workers_share_a_room_exactly_once(
    gunicorn: ServerProcess, redis_server: RedisProcess, http: aiohttp.ClientSession
) -> None:
    await wait_subscriber_connections(redis_server, 2)  # the brokers are up
    # Two different worker pids answer /stats (each request on a new connection).
    # A worker may still be booting: ask until both have answered (bounded).
    pids: set[int] = set()

    async def both_workers_answered() -> bool:
        async with http.get(
            f"http://{HOST}:{gunicorn.port}/stats", headers={"Connection": "close"}
        ) as response:
            stats = await response.json()
        assert stats["broker"].startswith("RedisBroker(")
        pids.add(stats["pid"])
        return len(pids) == 2

    await eventually(both_workers_answered, 20.0, 0.02, what=lambda: f"two workers, saw {pids}")

    # Open members until both workers have some (both subscribe the room in Redis).
    members: list[Member] = []
    while len(members) < 3 or numsub(redis_server, CHANNEL) < 2:
        assert len(members) < MAX_MEMBERS, (
            f"{MAX_MEMBERS} members all landed on one worker (pids seen: {pids})"
        )
        members.append(await Member.join(http, gunicorn.port, ROOM, f"m{len(members)}"))
        if len(members) >= 3:
            # Joining is asynchronous: give the newest member a moment to subscribe.
            await numsub_reaches(redis_server, CHANNEL, 2, within=0.5)
    await until_every_member_listens(http, [gunicorn.port], ROOM, members)

    await exchange_and_check(members, per_member=3)

    for member in members:
        await member.leave()
    await wait_numsub(redis_server, CHANNEL, 0)
    assert len(pids) == 2, f"only one worker answered /stats: {pids}"
    log = gunicorn.log()
    assert log.count("Booting worker with pid") == 2, log
    assert "Traceback" not in log and " ERROR " not in log, log
    print(f"\ngunicorn: {len(members)} members over worker pids {sorted(pids)}")
