"""aiohttp_spry: raw_aiohttp's routes through ``@spry.route`` and ``ws.events``, public API
only, written the way the README shows it. ``--metrics``: with ``enable_metrics(app)``
(``aiohttp_spry[metrics]``) and ``GET /metrics``."""

from __future__ import annotations

from aiohttp import web

from aiohttp_spry import BinaryDataReceived, Event, Spry, TextDataReceived, WebSocket
from bench.servers.common import ECHO_PATH, HELLO_BODY, HELLO_PATH, arguments, run_aiohttp


async def session(ws: WebSocket) -> None:
    async for message in ws.events:
        if isinstance(message, TextDataReceived):
            await ws.send_text(message.text)
        elif isinstance(message, BinaryDataReceived):
            await ws.send_bytes(message.data)


def make_app(*, metrics: bool = False) -> web.Application:
    app = web.Application()
    spry = Spry(app)

    @spry.route(ECHO_PATH)
    async def echo(event: Event) -> web.StreamResponse:
        return event.ws.upgrade(session)

    @spry.route(HELLO_PATH)
    async def hello(event: Event) -> str:
        return HELLO_BODY

    if metrics:
        from aiohttp_spry.metrics import enable_metrics, metrics_handler

        enable_metrics(app)
        app.router.add_get("/metrics", metrics_handler)
    return app


if __name__ == "__main__":
    args = arguments(__doc__, switches=("metrics",))
    run_aiohttp(make_app(metrics=args.metrics), args.port, args.loop)
