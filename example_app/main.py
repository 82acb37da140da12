"""Application factories for the example.

``create_app()`` (the default, used by ``python -m example_app``,
``adev runserver example_app`` and gunicorn) declares ``/chat``, the chat rooms
(``/rooms/{room}``) and their page (``GET /``) with decorators.
``create_file_routes_app()`` serves the echo chat from the ``routes/`` folder
(``python -m example_app --file-routes``,
``adev runserver example_app --app-factory create_file_routes_app``).

Both are async, as gunicorn's ``aiohttp.GunicornWebWorker`` requires of a
factory: ``gunicorn example_app.main:create_app --worker-class
aiohttp.GunicornWebWorker --workers 2``. The broker comes from the environment:
no ``SPRY_BROKER_URL`` → in-memory (each process its own rooms);
``SPRY_BROKER_URL=redis://127.0.0.1:6379/0`` → Redis (rooms shared by every
process and host on that Redis).
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from aiohttp import web

from aiohttp_spry import Event, Spry
from aiohttp_spry.pubsub import FANOUT_KEY

from .chat import chat
from .rooms import ROOM, index, keep_history, room

ROUTES = Path(__file__).resolve().parent / "routes"
#: The environment variable naming the broker (unset: in-memory).
BROKER_ENV = "SPRY_BROKER_URL"

log = logging.getLogger("example_app")

spry = Spry()
spry.route("/chat")(chat)
spry.route("/")(index)
spry.route(f"/rooms/{{room:{ROOM}}}", methods=["GET", "POST"])(room)
keep_history(spry)


@spry.route("/stats")
def stats(event: Event) -> dict[str, object]:
    """Live counters for operators and soak tests: open sessions, asyncio tasks, broker."""
    broker = event.app[FANOUT_KEY].broker
    return {
        "sessions": len(Spry.sessions(event.app)),
        "tasks": len(asyncio.all_tasks()),
        "pid": os.getpid(),
        "broker": repr(broker),
        "broker_connected": broker.connected,
    }


async def create_app() -> web.Application:
    """The tutorial's echo chat and the chat rooms, declared with ``@spry.route``."""
    url = os.environ.get(BROKER_ENV) or None
    app = web.Application()
    spry.init_app(app, broker=url)
    log.info("Chat rooms broker: %s (pid %d)", app[FANOUT_KEY].broker, os.getpid())
    return app


async def create_file_routes_app() -> web.Application:
    """The same echo chat from ``routes/``, plus the token-guarded ``/private/chat``."""
    app = web.Application()
    Spry(app, routes=ROUTES)
    return app
