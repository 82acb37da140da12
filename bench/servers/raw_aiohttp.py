"""Raw aiohttp: the baseline every other figure is divided by."""

from __future__ import annotations

from aiohttp import WSMsgType, web

from bench.servers.common import ECHO_PATH, HELLO_BODY, HELLO_PATH, arguments, run_aiohttp


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


if __name__ == "__main__":
    args = arguments(__doc__)
    run_aiohttp(make_app(), args.port, args.loop)
