"""Starlette on uvicorn: httptools for HTTP, websockets' sans-I/O protocol for WebSockets
(uvicorn's defaults when both are installed), stdlib asyncio loop, one worker."""

from __future__ import annotations

import argparse

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from bench.frames import ECHO_PATH, HELLO_BODY, HELLO_PATH
from bench.servers import BACKLOG, HOST, raise_fd_limit

UVICORN_SETTINGS = {"loop": "asyncio", "http": "httptools", "ws": "websockets-sansio"}


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is not None:
            await websocket.send_text(text)
        else:
            await websocket.send_bytes(message["bytes"])


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse(HELLO_BODY)


def make_app() -> Starlette:
    return Starlette(
        routes=[WebSocketRoute(ECHO_PATH, echo), Route(HELLO_PATH, hello, methods=["GET"])]
    )


def main(port: int) -> None:
    raise_fd_limit()
    uvicorn.run(
        make_app(),
        host=HOST,
        port=port,
        backlog=BACKLOG,
        access_log=False,
        log_level="warning",
        lifespan="off",
        ws_ping_interval=None,
        timeout_graceful_shutdown=1,
        **UVICORN_SETTINGS,  # type: ignore[arg-type]
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    main(parser.parse_args().port)
