"""Starlette on uvicorn: httptools for HTTP, websockets' sans-I/O protocol for WebSockets
(uvicorn's defaults when both are installed), stdlib asyncio loop, one worker."""

from __future__ import annotations

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from bench.servers.common import BACKLOG, ECHO_PATH, HELLO_BODY, HELLO_PATH, HOST, arguments


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        if (text := message.get("text")) is not None:
            await websocket.send_text(text)
        else:
            await websocket.send_bytes(message["bytes"])


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse(HELLO_BODY)


if __name__ == "__main__":
    app = Starlette(
        routes=[WebSocketRoute(ECHO_PATH, echo), Route(HELLO_PATH, hello, methods=["GET"])]
    )
    uvicorn.run(
        app,
        host=HOST,
        port=arguments(__doc__).port,
        backlog=BACKLOG,
        access_log=False,
        log_level="warning",
        lifespan="off",
        ws_ping_interval=None,
        timeout_graceful_shutdown=1,
        loop="asyncio",
        http="httptools",
        ws="websockets-sansio",
    )
