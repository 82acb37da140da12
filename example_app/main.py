"""Application factories for the example.

``create_app()`` (the default, used by ``python -m example_app`` and
``adev runserver example_app``) declares ``/chat`` with a decorator.
``create_file_routes_app()`` serves the same app from the ``routes/`` folder
(``python -m example_app --file-routes``,
``adev runserver example_app --app-factory create_file_routes_app``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from aiohttp_spry import Event, Spry

from .chat import chat

ROUTES = Path(__file__).resolve().parent / "routes"

spry = Spry()
spry.route("/chat")(chat)


@spry.route("/stats")
def stats(event: Event) -> dict[str, int]:
    """Live counters for operators and soak tests: open sessions, asyncio tasks."""
    return {"sessions": len(Spry.sessions(event.app)), "tasks": len(asyncio.all_tasks())}


def create_app() -> web.Application:
    """The tutorial's echo chat, declared with ``@spry.route``."""
    app = web.Application()
    spry.init_app(app)
    return app


def create_file_routes_app() -> web.Application:
    """The same echo chat from ``routes/``, plus the token-guarded ``/private/chat``."""
    app = web.Application()
    Spry(app, routes=ROUTES)
    return app
