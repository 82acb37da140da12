"""aiohttp_spry with the Redis broker, for the cross-process latency benchmark.

Two of these share one ``redis-server``; ``GET /sub`` is a session subscribed to ``"t"``.
Control commands: ``count``, and ``stream`` (``run``, ``count``, ``rate``): publish
messages stamped with ``time.time_ns()`` just before each ``spry.publish``, at a steady
rate on an absolute schedule (a late tick does not shift the next ones).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from aiohttp import web

from aiohttp_spry import Event, Spry, WebSocket
from aiohttp_spry.pubsub.redis import RedisBroker
from bench.fanout.messages import REDIS_PATH, TOPIC, latency_message
from bench.servers.common import add_control, arguments, fd_limit, run_aiohttp


async def session(ws: WebSocket) -> None:
    await ws.subscribe(TOPIC)
    async for _ in ws.events:
        pass


def make_app(redis_url: str) -> web.Application:
    app = web.Application()
    broker = RedisBroker(redis_url)
    spry = Spry(app, broker=broker)

    @spry.route(REDIS_PATH)
    async def subscriber(event: Event) -> web.StreamResponse:
        return event.ws.upgrade(session)

    async def stream(run: int, count: int, rate: float) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        start = loop.time() + 1.0 / rate
        delivered, late_max, publish_ns = 0, 0.0, []
        cpu0, t0 = time.process_time(), time.perf_counter()
        for seq in range(count):
            due = start + seq / rate
            if (delay := due - loop.time()) > 0:
                await asyncio.sleep(delay)
            late_max = max(late_max, loop.time() - due)
            stamp = time.time_ns()
            delivered += await spry.publish(app, TOPIC, latency_message(run, seq, stamp))
            publish_ns.append(time.time_ns() - stamp)
        return {
            "published": count,
            "delivered": delivered,
            "seconds": time.perf_counter() - t0,
            "cpu": time.process_time() - cpu0,
            "late_max": late_max,
            # The local fan-out is synchronous: how long each publish call took.
            "publish_ms_median": statistics.median(publish_ns) / 1e6,
            "publish_ms_max": max(publish_ns) / 1e6,
        }

    async def run(cmd: dict[str, Any]) -> dict[str, Any]:
        if cmd["op"] == "count":
            subscribers = len(spry.subscribers(app, TOPIC))
            return {"subscribers": subscribers, "redis": broker.connected, "fds": fd_limit()}
        return await stream(cmd["run"], cmd["count"], cmd["rate"])

    add_control(app, run)
    return app


if __name__ == "__main__":
    args = arguments(__doc__, "redis")
    run_aiohttp(make_app(args.redis), args.port)
