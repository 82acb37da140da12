"""The fan-out floor and aiohttp_spry in one process, for head-to-head bursts.

``GET /raw/sub``: a plain ``web.WebSocketResponse`` added to a set of
subscribers; a burst is the hand-written loop ``for ws in subscribers: await
ws.send_str(msg)`` once per message. ``GET /spry/sub``: a ``@spry.route``
session that calls ``await ws.subscribe("t")``; a burst is ``await
spry.publish(app, "t", msg)`` once per message (public API only). Both kinds of
session just wait for the peer to close. Control commands (``GET /control``):

- ``{"op": "count"}``: ``{"raw": n, "spry": n, "fds": {...}}``, the open subscribers;
- ``{"op": "burst", "set": "raw"|"spry", "id": b, "k": k}``: publish the ``k``
  messages of burst ``b`` back to back (built before the clock starts); answers
  with the deliveries written and the loop's wall and CPU seconds.

    python -m bench.servers.fanout_local --port 8081
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from aiohttp_spry import Event, Spry, WebSocket
from bench.fanout.wire import RAW_PATH, SPRY_PATH, TOPIC, burst_messages
from bench.servers.fanout_common import add_control, fd_limit, port_argument, serve, timed

RAW_SUBSCRIBERS = web.AppKey("raw_subscribers", set[web.WebSocketResponse])


async def raw_subscriber(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    subscribers = request.app[RAW_SUBSCRIBERS]
    subscribers.add(ws)
    try:
        async for _ in ws:
            pass
    finally:
        subscribers.discard(ws)
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
            return {
                "raw": len(app[RAW_SUBSCRIBERS]),
                "spry": len(spry.subscribers(app, TOPIC)),
                "fds": fd_limit(),
            }
        if cmd["op"] == "burst":
            messages = burst_messages(cmd["id"], cmd["k"])
            burst = raw_burst if cmd["set"] == "raw" else spry_burst
            return await timed(lambda: burst(messages))
        return {"error": f"unknown command {cmd!r}"}

    add_control(app, run)
    return app


def main(port: int) -> None:
    serve(make_app(), port)


if __name__ == "__main__":
    main(port_argument(__doc__ or "").parse_args().port)
