"""Raw aiohttp: the baseline every other figure is divided by."""

from __future__ import annotations

import argparse

from aiohttp import WSMsgType, web

from bench.frames import ECHO_PATH, HELLO_BODY, HELLO_PATH
from bench.servers import BACKLOG, HOST, raise_fd_limit


async def echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for message in ws:
        if message.type is WSMsgType.TEXT:
            await ws.send_str(message.data)
        elif message.type is WSMsgType.BINARY:
            await ws.send_bytes(message.data)
    return ws


async def hello(request: web.Request) -> web.Response:
    return web.Response(text=HELLO_BODY)


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get(ECHO_PATH, echo, allow_head=False)
    app.router.add_get(HELLO_PATH, hello, allow_head=False)
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
