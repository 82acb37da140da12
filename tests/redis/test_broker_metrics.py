"""The broker figures with a real Redis: ``aiohttp_spry_broker_connected`` and
``aiohttp_spry_broker_outages_total`` follow a kill and a restart (of the one node,
or of one shard of a cluster: the cluster is then not fully connected)."""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CollectorRegistry

from aiohttp_spry import Spry
from aiohttp_spry.metrics import enable_metrics
from tests.support.polling import eventually

from .backends import PREFIX, Backend
from .conftest import ServeApp

RESUME_TIMEOUT = 15.0


async def test_broker_figures_follow_a_redis_outage(backend: Backend, serve_app: ServeApp) -> None:
    app = web.Application()
    Spry(app, broker=backend.broker())
    registry = CollectorRegistry()
    enable_metrics(app, registry=registry)
    await serve_app(app)

    def figure(name: str) -> float | None:
        return registry.get_sample_value(name)

    await eventually(lambda: figure("aiohttp_spry_broker_connected") == 1, what="connected")
    assert figure("aiohttp_spry_broker_outages_total") == 0

    backend.kill(f"{PREFIX}metrics")
    await eventually(
        lambda: figure("aiohttp_spry_broker_connected") == 0, what="disconnected figure"
    )
    assert figure("aiohttp_spry_broker_outages_total") == 1
    await asyncio.sleep(0.3)  # reconnect attempts fail meanwhile: still one outage
    assert figure("aiohttp_spry_broker_outages_total") == 1

    await asyncio.to_thread(backend.restart)
    await eventually(
        lambda: figure("aiohttp_spry_broker_connected") == 1,
        timeout=RESUME_TIMEOUT,
        what="connected again",
    )
    assert figure("aiohttp_spry_broker_outages_total") == 1
