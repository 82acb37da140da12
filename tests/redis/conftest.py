"""Fixtures for the Redis suite: a real ``redis-server``, in-process apps and example processes.

``redis-server`` is optional on a developer machine: without it these tests
skip with the reason. With ``SPRY_REQUIRE_OPTIONAL=1`` (CI sets it) a missing
``redis-server`` fails them instead, so CI cannot go green by skipping.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from aiohttp_spry import Spry
from tests.e2e.helpers import ServerProcess, stop_example
from tests.e2e.helpers import start_example as start_example_process
from tests.support.clusterproc import RedisClusterProcess, host_binds, redis_cli_path
from tests.support.optional import require_tool
from tests.support.polling import eventually
from tests.support.procs import HOST, subprocess_env
from tests.support.redisproc import RedisProcess, redis_server_path

from .helpers import wait_subscriber_connections

#: ``port = await serve_app(app)``: served like ``web.run_app`` on 127.0.0.1.
ServeApp = Callable[[web.Application], Awaitable[int]]
#: ``server = start_example(name, broker_url)``: ``python -m example_app`` on a free port.
StartExample = Callable[[str, str], ServerProcess]
#: ``proc_a, proc_b = two_examples``: two example processes sharing the test's Redis.
TwoExamples = tuple[ServerProcess, ServerProcess]
#: One loopback address per cluster master, so nothing can assume one host.
CLUSTER_HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")


def cluster_hosts() -> tuple[str, ...]:
    """:data:`CLUSTER_HOSTS` where they all bind (Linux), else only 127.0.0.1 (macOS)."""
    return CLUSTER_HOSTS if all(host_binds(h) for h in CLUSTER_HOSTS) else (HOST,)


def new_cluster(masters: int = 3) -> RedisClusterProcess:
    """A :class:`RedisClusterProcess` on :func:`cluster_hosts`, NOT started; skips (or
    fails under ``SPRY_REQUIRE_OPTIONAL=1``) without ``redis-server`` / ``redis-cli``."""
    server, cli = redis_server_path(), redis_cli_path()
    require_tool("redis-server", server is not None, "apt-get install -y redis-server")
    require_tool("redis-cli", cli is not None, "apt-get install -y redis-tools")
    assert server is not None and cli is not None
    return RedisClusterProcess(server, masters=masters, hosts=cluster_hosts(), redis_cli=cli)


@pytest.fixture
def redis_process() -> Iterator[RedisProcess]:
    """A ``redis-server`` on a free port, NOT started yet (tests start, kill, restart it)."""
    path = redis_server_path()
    require_tool("redis-server", path is not None, "apt-get install -y redis-server")
    assert path is not None
    redis = RedisProcess(path)
    try:
        yield redis
    finally:
        redis.cleanup()  # SIGTERM by PID, then SIGKILL; removes its temporary directory


@pytest.fixture
def redis_cluster() -> Iterator[RedisClusterProcess]:
    """A running Redis Cluster: 3 masters (no replicas) on 127.0.0.1, .2 and .3, all 16384
    slots covered; every process stopped by PID and its directory removed after."""
    cluster = new_cluster()
    cluster.start()  # cleans up what it started if it fails
    try:
        yield cluster
    finally:
        cluster.cleanup()


@pytest.fixture
def persistent_redis(redis_process: RedisProcess) -> RedisProcess:
    """A running ``redis-server`` with ``--appendonly yes``: a SIGKILL and restart keep
    every write it acknowledged."""
    redis_process.appendonly = True
    redis_process.start()
    return redis_process


@pytest.fixture
def redis_server(redis_process: RedisProcess) -> RedisProcess:
    """A running ``redis-server`` on a free 127.0.0.1 port, stopped after the test."""
    redis_process.start()
    return redis_process


@pytest.fixture
async def serve_app(redis_process: RedisProcess) -> AsyncIterator[ServeApp]:
    """Serve apps on 127.0.0.1 as ``web.run_app`` does; clean up (closing brokers) before Redis."""
    runners: list[web.AppRunner] = []

    async def serve(app: web.Application) -> int:
        runner = web.AppRunner(app, handler_cancellation=False)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, HOST, 0)
        await site.start()
        return int(runner.addresses[0][1])

    yield serve
    # Let the sessions the test's clients closed end, and their unsubscribes
    # reach Redis, before closing the brokers: a close() during an in-flight
    # (un)subscribe hangs (a library bug, see
    # test_broker_close_right_after_the_last_subscriber_left_returns).
    # (Best effort: after 5 s the cleanup goes ahead anyway.)
    with contextlib.suppress(AssertionError):
        await eventually(
            lambda: not any(Spry.sessions(runner.app) for runner in runners),
            5.0,
            what="every session of the served apps ended",
        )
    await asyncio.sleep(0.1)
    for runner in reversed(runners):
        await asyncio.wait_for(runner.cleanup(), 15.0)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An aiohttp client session that ignores proxy settings from the environment."""
    async with aiohttp.ClientSession(trust_env=False) as session:
        yield session


@pytest.fixture
def start_example(tmp_path: Path, redis_process: RedisProcess) -> Iterator[StartExample]:
    """Start ``python -m example_app`` processes on ``SPRY_BROKER_URL``; SIGINT them after."""
    started: list[ServerProcess] = []

    def start(name: str, broker_url: str) -> ServerProcess:
        env = subprocess_env({"SPRY_BROKER_URL": broker_url})
        started.append(start_example_process(tmp_path / f"{name}.log", env=env))
        return started[-1]

    try:
        yield start
    finally:
        for server in started:
            stop_example(server)


@pytest.fixture
async def two_examples(redis_server: RedisProcess, start_example: StartExample) -> TwoExamples:
    """``python -m example_app`` as A and B on the test's Redis, both brokers subscribed."""
    a = start_example("A", redis_server.url)
    b = start_example("B", redis_server.url)
    await wait_subscriber_connections(redis_server, 2)
    return a, b
