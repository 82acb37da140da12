"""aiohttp_spry: the same routes as ``raw_aiohttp``, through ``@spry.route`` and ``ws.events``.

Public API only, written the way the README shows it.
"""

from __future__ import annotations

import argparse

from aiohttp import web

from aiohttp_spry import BinaryDataReceived, Event, Spry, TextDataReceived, WebSocket
from bench.frames import ECHO_PATH, HELLO_BODY, HELLO_PATH
from bench.servers import BACKLOG, HOST, raise_fd_limit


async def session(ws: WebSocket) -> None:
    async for message in ws.events:
        if isinstance(message, TextDataReceived):
            await ws.send_text(message.text)
        elif isinstance(message, BinaryDataReceived):
            await ws.send_bytes(message.data)


def make_app() -> web.Application:
    app = web.Application()
    spry = Spry(app)

    @spry.route(ECHO_PATH)
    async def echo(event: Event) -> web.StreamResponse:
        return event.ws.upgrade(session)

    @spry.route(HELLO_PATH)
    async def hello(event: Event) -> str:
        return HELLO_BODY

    return app


def main(port: int) -> None:
    raise_fd_limit()
    web.run_app(
        make_app(),
        host=HOST,
        port=port,
        backlog=BACKLOG,
        access_log=None,
        print=None,
        shutdown_timeout=1.0,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    main(parser.parse_args().port)
