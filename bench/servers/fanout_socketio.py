"""python-socketio on aiohttp: every client joins room ``"r"`` on connect; a burst runs
``await sio.emit("m", msg, room="r")`` per message. Engine.IO's 25 s pings stay on (the
client answers them). ``emit`` only queues for a writer task per client, so the client
times a burst to the last frame it receives. Control commands: ``count``, ``burst``."""

from __future__ import annotations

from typing import Any

import socketio
from aiohttp import web

from bench.fanout.messages import EVENT, ROOM, burst_messages
from bench.servers.common import add_control, arguments, fd_limit, run_aiohttp, timed


def make_app() -> web.Application:
    app = web.Application()
    sio = socketio.AsyncServer(async_mode="aiohttp", logger=False, engineio_logger=False)
    sio.attach(app)

    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        await sio.enter_room(sid, ROOM)

    sio.on("connect", connect)

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
        messages = burst_messages(cmd["id"], cmd["k"])
        return await timed(lambda: burst(messages))

    add_control(app, run)
    return app


if __name__ == "__main__":
    run_aiohttp(make_app(), arguments(__doc__).port)
