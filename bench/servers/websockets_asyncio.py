"""The ``websockets`` library's asyncio server. It is no HTTP server: ``/hello`` is answered
from ``process_request`` and the connection closed after it (no keep-alive), so its HTTP
figure includes a TCP connect per request."""

from __future__ import annotations

import asyncio
import signal
from http import HTTPStatus

from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from bench.servers.common import BACKLOG, ECHO_PATH, HELLO_BODY, HELLO_PATH, HOST, arguments


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


def route(connection: ServerConnection, request: Request) -> Response | None:
    if request.path == HELLO_PATH:
        return connection.respond(HTTPStatus.OK, HELLO_BODY)
    return (
        None if request.path == ECHO_PATH else connection.respond(HTTPStatus.NOT_FOUND, "Not Found")
    )


async def main(port: int) -> None:
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(
        echo, HOST, port, process_request=route, ping_interval=None, backlog=BACKLOG
    ) as server:
        await stop
        server.close(close_connections=True)


if __name__ == "__main__":
    asyncio.run(main(arguments(__doc__).port))
