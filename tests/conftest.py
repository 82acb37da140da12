"""Shared fixtures: an aiohttp app with a Spry extension, served on 127.0.0.1 by aiohttp_client."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from aiohttp_spry import Spry

ClientFactory = Callable[[Spry], Awaitable[TestClient[web.Request, web.Application]]]


@pytest.fixture
def serve(
    aiohttp_client: Callable[..., Awaitable[TestClient[web.Request, web.Application]]],
) -> ClientFactory:
    """``client = await serve(spry)``: a real server on 127.0.0.1 for a new app using ``spry``."""

    async def start(spry: Spry) -> TestClient[web.Request, web.Application]:
        app = web.Application()
        spry.init_app(app)
        return await aiohttp_client(app)

    return start


def spry_records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    """The records the ``aiohttp_spry`` logger emitted at exactly ``level``."""
    return [r for r in caplog.records if r.name == "aiohttp_spry" and r.levelno == level]


@attrs.frozen
class RunningApp:
    app: web.Application
    port: int


RunAppFactory = Callable[..., Awaitable[RunningApp]]


@pytest.fixture
async def serve_like_run_app() -> AsyncIterator[RunAppFactory]:
    """``running = await serve_like_run_app(spry)``: served as ``web.run_app`` serves it.

    aiohttp's test server cancels a handler when its client disconnects
    (``handler_cancellation=True``); ``web.run_app`` does not, so a session
    sees the end of its connection. Tests of that path use this fixture.
    """
    runners: list[web.AppRunner] = []

    async def start(spry: Spry, *, handler_cancellation: bool = False) -> RunningApp:
        app = web.Application()
        spry.init_app(app)
        runner = web.AppRunner(app, handler_cancellation=handler_cancellation)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return RunningApp(app, runner.addresses[0][1])

    yield start
    for runner in runners:
        await runner.cleanup()
