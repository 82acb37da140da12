"""Shared fixtures: an aiohttp app with a Spry extension, served on 127.0.0.1 by aiohttp_client."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

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
