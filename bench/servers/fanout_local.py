"""The fan-out floor and aiohttp_spry in one process, for alternating bursts.

``GET /raw/sub``: a plain ``web.WebSocketResponse`` in a set; a burst runs
``for ws in subscribers: await ws.send_str(msg)`` per message. ``GET /spry/sub``: a
``@spry.route`` session that called ``await ws.subscribe("t")``; a burst runs
``await spry.publish(app, "t", msg)`` per message. Control commands: ``count``, and
``burst`` (``set``, ``id``, ``k``), the messages built before the clock starts.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from aiohttp_spry import Event, Spry, WebSocket
from bench.fanout.messages import RAW_PATH, SPRY_PATH, TOPIC, burst_messages
from bench.servers.common import add_control, arguments, fd_limit, run_aiohttp, timed

RAW_SUBSCRIBERS = web.AppKey("raw_subscribers", set[web.WebSocketResponse])


async def raw_subscriber(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    request.app[RAW_SUBSCRIBERS].add(ws)
    try:
        async for _ in ws:
            pass
    finally:
        request.app[RAW_SUBSCRIBERS].discard(ws)
    return ws


async def spry_session(ws: WebSocket) -> None:
    await ws.subscribe(TOPIC)
    async for _ in ws.events:
        pass


def make_app() -> web.Application:
    app = web.Application()
    app[RAW_SUBSCRIBERS] = set()
    app.router.add_get(RAW_PATH, raw_subscriber, allow_head=False)
    spry = Spry(app)

    @spry.route(SPRY_PATH)
    async def spry_subscriber(event: Event) -> web.StreamResponse:
        return event.ws.upgrade(spry_session)

    async def raw_burst(messages: list[str]) -> int:
        subscribers = app[RAW_SUBSCRIBERS]
        for msg in messages:
            for ws in subscribers:
                await ws.send_str(msg)
        return len(messages) * len(subscribers)

    async def spry_burst(messages: list[str]) -> int:
        delivered = 0
        for msg in messages:
            delivered += await spry.publish(app, TOPIC, msg)
        return delivered

    async def run(cmd: dict[str, Any]) -> dict[str, Any]:
        if cmd["op"] == "count":
            raw, spry_count = len(app[RAW_SUBSCRIBERS]), len(spry.subscribers(app, TOPIC))
            return {"raw": raw, "spry": spry_count, "fds": fd_limit()}
        messages = burst_messages(cmd["id"], cmd["k"])
        burst = raw_burst if cmd["set"] == "raw" else spry_burst
        return await timed(lambda: burst(messages))

    add_control(app, run)
    return app


if __name__ == "__main__":
    run_aiohttp(make_app(), arguments(__doc__).port)
