"""python-socketio on aiohttp, for the fan-out benchmark.

``socketio.AsyncServer(async_mode="aiohttp")`` attached to an aiohttp
application; every client that connects joins the room ``"r"``; a burst is
``await sio.emit("m", msg, room="r")`` once per message. Engine.IO's default
ping interval (25 s) is kept: the client answers the pings. Control commands
(``GET /control``, a plain aiohttp route of the same application):

- ``{"op": "count"}``: ``{"socketio": n, "fds": {...}}``, the room's members;
- ``{"op": "burst", "id": b, "k": k}``: emit the ``k`` messages of burst ``b``
  back to back. python-socketio queues each delivery for a per-client writer
  task, so the answer may come before the last delivery: the client times the
  burst to the last frame it receives.

    python -m bench.servers.fanout_socketio --port 8082
"""

from __future__ import annotations

from typing import Any

import socketio
from aiohttp import web

from bench.fanout.wire import EVENT, ROOM, burst_messages
from bench.servers.fanout_common import add_control, fd_limit, port_argument, serve, timed


def make_app() -> web.Application:
    app = web.Application()
    sio = socketio.AsyncServer(async_mode="aiohttp", logger=False, engineio_logger=False)
    sio.attach(app)

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        await sio.enter_room(sid, ROOM)

    def members() -> int:
        return sum(1 for _ in sio.manager.get_participants("/", ROOM))

    async def burst(messages: list[str]) -> int:
        recipients = members()
        for msg in messages:
            await sio.emit(EVENT, msg, room=ROOM)
        return len(messages) * recipients

    async def run(cmd: dict[str, Any]) -> dict[str, Any]:
        if cmd["op"] == "count":
            return {"socketio": members(), "fds": fd_limit()}
        if cmd["op"] == "burst":
            messages = burst_messages(cmd["id"], cmd["k"])
            return await timed(lambda: burst(messages))
        return {"error": f"unknown command {cmd!r}"}

    add_control(app, run)
    return app


def main(port: int) -> None:
    serve(make_app(), port)


if __name__ == "__main__":
    main(port_argument(__doc__ or "").parse_args().port)
