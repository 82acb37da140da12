"""aiohttp_spry with the Redis broker, for the cross-process latency benchmark.

Run two (or more) of these against one ``redis-server``: ``GET /sub`` is a
``@spry.route`` session subscribed to ``"t"``; the publisher is a command on
the control WebSocket (``GET /control``):

- ``{"op": "count"}``: ``{"subscribers": n, "redis": bool, "fds": {...}}``;
- ``{"op": "stream", "run": r, "count": c, "rate": hz}``: publish ``c``
  timestamped messages (``time.time_ns()`` taken just before each
  ``spry.publish``; CLOCK_REALTIME, the clock of the client's kernel receive
  timestamps) at a steady ``hz`` per second, on an absolute schedule so a late
  tick does not shift the ones after it; answers when done with the local
  deliveries, how long each publish call took and how late the ticks were.

    python -m bench.servers.fanout_redis --port 8083 --redis redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from aiohttp import web

from aiohttp_spry import Event, Spry, WebSocket
from aiohttp_spry.pubsub.redis import RedisBroker
from bench.fanout.wire import REDIS_PATH, TOPIC, latency_message
from bench.servers.fanout_common import add_control, fd_limit, port_argument, serve


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
        interval = 1.0 / rate
        start = loop.time() + interval
        delivered = 0
        late_max = 0.0
        publish_ns: list[int] = []
        cpu0, t0 = time.process_time(), time.perf_counter()
        for seq in range(count):
            due = start + seq * interval
            delay = due - loop.time()
            if delay > 0:
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
            # How long each publish call took (the local fan-out is synchronous).
            "publish_ms_median": statistics.median(publish_ns) / 1e6,
            "publish_ms_max": max(publish_ns) / 1e6,
        }

    async def run(cmd: dict[str, Any]) -> dict[str, Any]:
        if cmd["op"] == "count":
            return {
                "subscribers": len(spry.subscribers(app, TOPIC)),
                "redis": broker.connected,
                "fds": fd_limit(),
            }
        if cmd["op"] == "stream":
            return await stream(cmd["run"], cmd["count"], cmd["rate"])
        return {"error": f"unknown command {cmd!r}"}

    add_control(app, run)
    return app


def main(port: int, redis_url: str) -> None:
    serve(make_app(redis_url), port)


if __name__ == "__main__":
    parser = port_argument(__doc__ or "")
    parser.add_argument("--redis", required=True, help="redis://host:port/db")
    args = parser.parse_args()
    main(args.port, args.redis)
