"""The server of ``python -m bench.scale``: idle sessions, one publish to all, many-topic load.

``--kind spry``: ``GET /sub/{topic}`` is a ``@spry.route`` session that subscribes to
``topic`` and idles; ``POST /publish`` (JSON ``{"topic", "data"}``) runs
``spry.publish``. ``--broker`` is ``memory`` or a broker URL (``redis://``,
``redis+cluster://``). ``--kind raw``: the equivalent plain aiohttp server, a
``web.WebSocketResponse`` per session kept in a set per topic, ``POST /publish``
running ``for ws in subscribers: await ws.send_str(data)``.

Both: ``GET /count`` answers ``{"sessions": N, "soft": ..., "hard": ...}``. The publish
answer is ``{"delivered": N, "seconds": S}`` (the server's own publish loop). With
``--kind spry``, ``POST /load`` (JSON ``{"origin", "topics", "seconds", "publishers"}``)
publishes to random topics ``t0``..``t{topics-1}`` at full speed for ``seconds``, from
``publishers`` tasks, each message ``"ORIGIN SEQ TIME_NS"`` (``time.time_ns()``),
yielding to the loop after every message so the broker's writer keeps up; it answers
how many it published and the process CPU it used.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from typing import Any

from aiohttp import web

from aiohttp_spry import Event, Spry, WebSocket
from bench.servers.common import arguments, fd_limit, run_aiohttp

SESSIONS = web.AppKey("raw_sessions", defaultdict[str, set[web.WebSocketResponse]])


def spry_app(broker: str) -> web.Application:
    app = web.Application()
    # A many-topic load at full speed may queue a burst on a session: room for it.
    spry = Spry(app, broker=None if broker == "memory" else broker, max_queued=100_000)

    @spry.route("/sub/{topic}")
    async def subscriber(event: Event) -> web.StreamResponse:
        topic = event.params["topic"]

        async def session(ws: WebSocket) -> None:
            await ws.subscribe(topic)
            async for _ in ws.events:
                pass

        return event.ws.upgrade(session)

    @spry.route("/publish", methods=["POST"])
    async def publish(event: Event) -> dict[str, Any]:
        body = await event.request.json()
        t0 = time.perf_counter()
        delivered = await spry.publish(event.app, body["topic"], body["data"])
        return {"delivered": delivered, "seconds": time.perf_counter() - t0}

    @spry.route("/count")
    def count(event: Event) -> dict[str, Any]:
        return {"sessions": len(Spry.sessions(event.app)), **fd_limit()}

    @spry.route("/load", methods=["POST"])
    async def load(event: Event) -> dict[str, Any]:
        body = await event.request.json()
        return await run_load(spry, event.app, **body)

    return app


async def run_load(
    spry: Spry, app: web.Application, origin: int, topics: int, seconds: float, publishers: int
) -> dict[str, Any]:
    """Publish to random topics at full speed from ``publishers`` tasks for ``seconds``."""
    names = [f"t{i}" for i in range(topics)]
    deadline = time.monotonic() + seconds
    cpu0, t0 = time.process_time(), time.perf_counter()

    async def publisher(number: int) -> int:
        pick = random.Random(origin * 1000 + number).choice
        seq = 0
        while time.monotonic() < deadline:
            await spry.publish(app, pick(names), f"{origin} {seq} {time.time_ns()}")
            seq += 1
            await asyncio.sleep(0)
        return seq

    counts = await asyncio.gather(*(publisher(n) for n in range(publishers)))
    return {
        "published": sum(counts),
        "seconds": time.perf_counter() - t0,
        "cpu": time.process_time() - cpu0,
    }


def raw_app() -> web.Application:
    app = web.Application()
    sessions: defaultdict[str, set[web.WebSocketResponse]] = defaultdict(set)
    app[SESSIONS] = sessions

    async def subscriber(request: web.Request) -> web.WebSocketResponse:
        subscribers = request.app[SESSIONS][request.match_info["topic"]]
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        subscribers.add(ws)
        try:
            async for _ in ws:
                pass
        finally:
            subscribers.discard(ws)
        return ws

    async def publish(request: web.Request) -> web.Response:
        body = await request.json()
        t0 = time.perf_counter()
        subscribers = request.app[SESSIONS].get(body["topic"], set())
        for ws in list(subscribers):
            await ws.send_str(body["data"])
        answer = {"delivered": len(subscribers), "seconds": time.perf_counter() - t0}
        return web.json_response(answer)

    async def count(request: web.Request) -> web.Response:
        sessions = sum(len(group) for group in request.app[SESSIONS].values())
        return web.json_response({"sessions": sessions, **fd_limit()})

    app.router.add_get("/sub/{topic}", subscriber, allow_head=False)
    app.router.add_post("/publish", publish)
    app.router.add_get("/count", count, allow_head=False)
    return app


def main() -> None:
    args = arguments(__doc__, "kind", "broker")
    app = spry_app(args.broker) if args.kind == "spry" else raw_app()
    run_aiohttp(app, args.port, host=args.host)


if __name__ == "__main__":
    main()
