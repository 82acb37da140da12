"""The ``websockets`` library's asyncio server.

It is a WebSocket server, not an HTTP one: ``/hello`` is answered from
``process_request``, and the connection is closed after each response (no
keep-alive), so its HTTP figure includes a TCP connect per request.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from http import HTTPStatus

from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from bench.frames import ECHO_PATH, HELLO_BODY, HELLO_PATH
from bench.servers import BACKLOG, HOST, raise_fd_limit


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


def route(connection: ServerConnection, request: Request) -> Response | None:
    if request.path == HELLO_PATH:
        return connection.respond(HTTPStatus.OK, HELLO_BODY)
    if request.path != ECHO_PATH:
        return connection.respond(HTTPStatus.NOT_FOUND, "Not Found")
    return None


async def serve_until_signalled(port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set_result, None)
    async with serve(
        echo, HOST, port, process_request=route, ping_interval=None, backlog=BACKLOG
    ) as server:
        await stop
        server.close(close_connections=True)


def main(port: int) -> None:
    raise_fd_limit()
    asyncio.run(serve_until_signalled(port))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    main(parser.parse_args().port)
