"""What the bench servers share: the command line, the GC counter, aiohttp's run_app, and
the fan-out servers' control WebSocket (one JSON command per text message, one answer)."""

from __future__ import annotations

import argparse
import atexit
import gc
import json
import logging
import resource
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from aiohttp_spry import raise_open_files_limit

HOST = "127.0.0.1"
#: Listen backlog for every server, so connection bursts never hit the default 100/128.
BACKLOG = 1024
CONTROL_PATH = "/control"
ECHO_PATH = "/ws"
HELLO_PATH = "/hello"
HELLO_BODY = "Hello, World!"
Command = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def arguments(
    description: str | None, *extra: str, switches: tuple[str, ...] = ()
) -> argparse.Namespace:
    """``--port PORT [--host ADDRESS] [--gc-stats FILE] [--loop asyncio|uvloop]``, each
    ``--EXTRA VALUE`` and
    each ``--SWITCH`` flag; the soft RLIMIT_NOFILE raised to the hard one (thousands of
    sockets)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default=HOST, help=f"loopback address to listen on ({HOST})")
    parser.add_argument("--gc-stats", type=Path, help="write cyclic GC statistics here at exit")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    for name in extra:
        parser.add_argument(f"--{name}", required=True)
    for name in switches:
        parser.add_argument(f"--{name}", action="store_true")
    args = parser.parse_args()
    # WARNING for everything (a peer logging each connection at INFO would pay for it in
    # its figures), INFO for aiohttp_spry: the open-files line, and nothing per message.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiohttp_spry").setLevel(logging.INFO)
    raise_open_files_limit()
    if args.gc_stats is not None:
        record_gc(args.gc_stats)
    return args


def record_gc(path: Path) -> None:
    """Count the cyclic GC's runs, time and freed objects; write them at exit (untimed runs)."""
    stats: dict[str, list[Any]] = {"runs": [0, 0, 0], "seconds": [0.0] * 3, "collected": [0] * 3}
    started: dict[int, float] = {}

    def callback(phase: str, info: dict[str, int]) -> None:
        generation = info["generation"]
        if phase == "start":
            started[generation] = time.perf_counter()
            return
        stats["runs"][generation] += 1
        stats["seconds"][generation] += time.perf_counter() - started.pop(generation, 0.0)
        stats["collected"][generation] += info["collected"]

    gc.callbacks.append(callback)
    atexit.register(lambda: path.write_text(json.dumps(stats)))


def run_aiohttp(app: web.Application, port: int, loop: str = "asyncio", host: str = HOST) -> None:
    """``web.run_app`` on asyncio's own loop, or on ``uvloop``."""
    event_loop = None
    if loop == "uvloop":
        import uvloop

        event_loop = uvloop.new_event_loop()
    web.run_app(
        app,
        host=host,
        port=port,
        backlog=BACKLOG,
        access_log=None,
        print=None,
        shutdown_timeout=1.0,
        loop=event_loop,
    )


def add_control(app: web.Application, run: Command) -> None:
    """``GET /control``: each JSON command runs to its end, then its JSON answer is sent;
    a failure is answered with ``{"error": ...}``, which fails the benchmark run."""

    async def control(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            if message.type is WSMsgType.TEXT:
                try:
                    answer = await run(json.loads(message.data))
                except Exception as error:
                    answer = {"error": f"{type(error).__name__}: {error}"}
                await ws.send_str(json.dumps(answer))
        return ws

    app.router.add_get(CONTROL_PATH, control, allow_head=False)


async def timed(loop: Callable[[], Awaitable[int]]) -> dict[str, Any]:
    """Run a publishing loop: its deliveries, wall seconds and process CPU seconds."""
    cpu0, t0 = time.process_time(), time.perf_counter()
    count = await loop()
    t1, cpu1 = time.perf_counter(), time.process_time()
    return {"delivered": count, "seconds": t1 - t0, "cpu": cpu1 - cpu0}


def fd_limit() -> dict[str, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {"soft": soft, "hard": hard}
