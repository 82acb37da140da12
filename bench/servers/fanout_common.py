"""What the fan-out benchmark servers share: the control WebSocket and the process setup.

The client sends one JSON command per text message on ``GET /control`` (a plain
aiohttp route in every fan-out server) and gets one JSON answer back, after the
command has run. Commands a server does not know get ``{"error": ...}``.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType, web

from bench.fanout.wire import CONTROL_PATH
from bench.servers import BACKLOG, HOST, raise_fd_limit

Command = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def add_control(app: web.Application, run: Command) -> None:
    async def control(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            if message.type is not WSMsgType.TEXT:
                continue
            try:
                answer = await run(json.loads(message.data))
            except Exception as error:  # reported to the client, which fails the run
                answer = {"error": f"{type(error).__name__}: {error}"}
            await ws.send_str(json.dumps(answer))
        return ws

    app.router.add_get(CONTROL_PATH, control, allow_head=False)


async def timed(loop: Callable[[], Awaitable[int]]) -> dict[str, Any]:
    """Run a publishing loop; its count, wall seconds and process CPU seconds."""
    cpu0, t0 = time.process_time(), time.perf_counter()
    count = await loop()
    t1, cpu1 = time.perf_counter(), time.process_time()
    return {"delivered": count, "seconds": t1 - t0, "cpu": cpu1 - cpu0}


def fd_limit() -> dict[str, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {"soft": soft, "hard": hard}


def serve(app: web.Application, port: int) -> None:
    raise_fd_limit()
    web.run_app(
        app,
        host=HOST,
        port=port,
        backlog=BACKLOG,
        access_log=None,
        print=None,
        shutdown_timeout=1.0,
    )


def port_argument(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, required=True)
    return parser
