"""aiohttp_spry with history, for ``python -m bench.history``.

``--broker memory`` or a ``redis://`` URL. Topics starting with ``h:`` keep
history (``size=200, ttl=600``); the others do not, so one process serves both
sides of the comparison. ``GET /sub/{topic}[?since=EPOCH:OFFSET]`` is a session
subscribed to ``topic``: when ``since`` is given, its first frame is
``{"recovered": …, "replayed": …}``. Control commands (``GET /control``):
``count`` (local subscribers per topic), ``burst`` (``topic``, ``run``,
``count``: publish that many messages, answer the publish loop's seconds and
CPU), ``stream`` (``topic``, ``run``, ``count``, ``rate``: stamped messages at
a steady rate), ``position`` (``topic``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from aiohttp_spry import Event, Spry, WebSocket
from bench.servers.common import add_control, arguments, fd_limit, run_aiohttp

HISTORY_PREFIX = "h:"
PAD = "x" * 24


def make_app(broker: str) -> web.Application:
    app = web.Application()
    spry = Spry(app, broker=None if broker == "memory" else broker, max_queued=100_000)
    spry.history(HISTORY_PREFIX, size=200, ttl=600)

    @spry.route("/sub/{topic}")
    async def subscriber(event: Event) -> web.StreamResponse:
        topic = event.params["topic"]
        since = event.query.get("since")

        async def session(ws: WebSocket) -> None:
            if since is not None:
                result = await ws.subscribe(topic, since=since, hold=True)
                await ws.send_json({"recovered": result.recovered, "replayed": result.replayed})
                ws.resume(topic)
            else:
                await ws.subscribe(topic)
            async for _ in ws.events:
                pass

        return event.ws.upgrade(session)

    async def burst(topic: str, run: int, count: int) -> dict[str, Any]:
        cpu0, t0 = time.process_time(), time.perf_counter()
        for seq in range(count):
            await spry.publish(app, topic, {"r": run, "s": seq, "pad": PAD})
        return {"seconds": time.perf_counter() - t0, "cpu": time.process_time() - cpu0}

    async def stream(topic: str, run: int, count: int, rate: float) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        start = loop.time() + 1.0 / rate
        for seq in range(count):
            if (delay := start + seq / rate - loop.time()) > 0:
                await asyncio.sleep(delay)
            await spry.publish(app, topic, {"r": run, "s": seq, "t": time.time_ns()})
        return {"published": count}

    async def command(message: dict[str, Any]) -> dict[str, Any]:
        op = message["op"]
        if op == "count":
            return {"subscribers": len(Spry.subscribers(app, message["topic"])), **fd_limit()}
        if op == "burst":
            return await burst(message["topic"], message["run"], message["count"])
        if op == "stream":
            return await stream(message["topic"], message["run"], message["count"], message["rate"])
        if op == "position":
            return {"position": str(await Spry.position(app, message["topic"]))}
        raise ValueError(f"unknown op {op!r}")

    add_control(app, command)
    return app


def main() -> None:
    args = arguments(__doc__, "broker")
    run_aiohttp(make_app(args.broker), args.port)


if __name__ == "__main__":
    main()
