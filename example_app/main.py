"""Application factories for the example.

``create_app()`` (the default, used by ``python -m example_app``,
``adev runserver example_app`` and gunicorn) declares ``/chat``, the chat rooms
(``/rooms/{room}``) and their page (``GET /``) with decorators.
``create_file_routes_app()`` is a different, smaller app: ``GET /chat`` (the same
echo chat, from ``routes/chat.get.py``) and the token-guarded ``GET /private/chat``
from the ``routes/`` folder, and nothing else: no page, rooms, ``/stats`` or
``/asyncapi.json`` (``python -m example_app --file-routes``,
``adev runserver example_app --app-factory create_file_routes_app``).

Under gunicorn, which configures only its own loggers, both set logging up
(unless something else did) at ``SPRY_LOG_LEVEL`` (``INFO`` by default), so the
example logs the same lines there as under ``python -m example_app`` and adev
(which configure logging themselves).

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
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from aiohttp_spry import Event, Spry
from aiohttp_spry.pubsub import FANOUT_KEY

from .chat import PROTOCOL, chat
from .rooms import ROOM, ROOM_MESSAGE, index, room

ROUTES = Path(__file__).resolve().parent / "routes"
#: The environment variable naming the broker (unset: in-memory).
BROKER_ENV = "SPRY_BROKER_URL"
#: The environment variable naming the log level when the example sets logging up.
LOG_LEVEL_ENV = "SPRY_LOG_LEVEL"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

log = logging.getLogger("example_app")

spry = Spry()
spry.route("/chat", receives=[str, bytes], sends=str, subprotocols=[PROTOCOL])(chat)
spry.route("/")(index)
spry.route(
    f"/rooms/{{room:{ROOM}}}",
    methods=["GET", "POST"],
    receives={"type": "string", "title": "memberText", "description": "Text for the room."},
    sends=ROOM_MESSAGE,
    query={"name": {"type": "string", "maxLength": 40, "description": "Shown to the others."}},
)(room)


def configure_logging(level: str | None = None) -> None:
    """Log to stderr at ``level`` (else ``SPRY_LOG_LEVEL``, else INFO), unless logging is set up.

    Raises:
        ValueError: ``level`` is not a logging level name.
    """
    if logging.getLogger().handlers:
        return  # python -m example_app, adev or the host application did it
    chosen = (level or os.environ.get(LOG_LEVEL_ENV) or "INFO").upper()
    if not isinstance(logging.getLevelName(chosen), int):
        raise ValueError(
            f"log level must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got {chosen!r}"
        )
    logging.basicConfig(level=chosen, format=LOG_FORMAT)


def under_gunicorn() -> bool:
    """Whether this process is a gunicorn worker (gunicorn imported it)."""
    return "gunicorn" in sys.modules


@spry.route("/asyncapi.json")
def asyncapi(event: Event) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of this app's WebSocket routes."""
    scheme = "wss" if event.request.secure else "ws"
    return spry.asyncapi(
        event.app,
        title="aiohttp_spry example: echo chat and rooms",
        version="1.0.0",
        description="The Spry tutorial's echo chat and chat rooms on topic pub/sub.",
        servers={"this": {"host": event.request.host, "protocol": scheme}},
    )


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
    if under_gunicorn():
        configure_logging()
    url = os.environ.get(BROKER_ENV) or None
    app = web.Application()
    spry.init_app(app, broker=url)
    log.info("Chat rooms broker: %s (pid %d)", app[FANOUT_KEY].broker, os.getpid())
    return app


async def create_file_routes_app() -> web.Application:
    """Only ``GET /chat`` and the token-guarded ``GET /private/chat``, from ``routes/``."""
    if under_gunicorn():
        configure_logging()
    app = web.Application()
    Spry(app, routes=ROUTES)
    return app
