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

Deployment settings (README "Deploying"), the same under every runner since
they live on the application (``web.Application(handler_args=...)`` overrides
what ``run_app``, ``adev`` or gunicorn's ``--keep-alive`` would pass):

- ``SPRY_KEEPALIVE_TIMEOUT`` (15 s): a connection that has not sent a complete
  request within this time, or stays idle between requests, is closed;
- ``SPRY_TRUSTED_PROXIES`` (unset): the reverse proxies, comma-separated
  addresses or networks, whose ``X-Forwarded-For``/``-Proto``/``-Host`` are
  believed (aiohttp-remotes' ``XForwardedStrict``); with it set, a request that
  did not come through one of them is refused with 400, except ``/metrics``;
- ``SPRY_HEARTBEAT`` (unset): WebSocket pings every so many seconds, below
  nginx's ``proxy_read_timeout``;
- with ``prometheus_client`` installed (``aiohttp_spry[metrics]``),
  ``GET /metrics``; ``SPRY_METRICS=0`` turns it off.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from aiohttp_spry import Event, Spry
from aiohttp_spry.pubsub import FANOUT_KEY

from .chat import PROTOCOL, chat
from .rooms import ROOM, ROOM_FRAMES, index, keep_history, room

ROUTES = Path(__file__).resolve().parent / "routes"
#: The environment variable naming the broker (unset: in-memory).
BROKER_ENV = "SPRY_BROKER_URL"
KEEPALIVE_ENV = "SPRY_KEEPALIVE_TIMEOUT"
TRUSTED_PROXIES_ENV = "SPRY_TRUSTED_PROXIES"
METRICS_ENV = "SPRY_METRICS"
#: Seconds a connection may take to send a complete request, or stay idle.
DEFAULT_KEEPALIVE_TIMEOUT = 15.0
METRICS_PATH = "/metrics"
#: The environment variable naming the log level when the example sets logging up.
LOG_LEVEL_ENV = "SPRY_LOG_LEVEL"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

log = logging.getLogger("example_app")


def _heartbeat_from_env() -> float | None:
    text = os.environ.get("SPRY_HEARTBEAT", "")
    return float(text) if text else None


#: ``SPRY_HEARTBEAT`` (seconds, unset: none): pings that keep a quiet session
#: alive behind a proxy's read timeout, and drop a peer that stopped answering.
spry = Spry(heartbeat=_heartbeat_from_env())
spry.route("/chat", receives=[str, bytes], sends=str, subprotocols=[PROTOCOL])(chat)
spry.route("/")(index)
spry.route(
    f"/rooms/{{room:{ROOM}}}",
    methods=["GET", "POST"],
    receives={"type": "string", "title": "memberText", "description": "Text for the room."},
    sends=ROOM_FRAMES,
    query={
        "name": {"type": "string", "maxLength": 40, "description": "Shown to the others."},
        "since": {
            "type": "string",
            "pattern": "^[^:]+:[0-9]+$",
            "description": "EPOCH:OFFSET of the last message seen: recover what came after.",
        },
        "presence": {"type": "string", "enum": ["1"], "description": "Get members and join/leave."},
    },
)(room)
keep_history(spry)


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
        "loop": type(asyncio.get_running_loop()).__module__,
    }


async def create_app(*, keepalive_timeout: float | None = None) -> web.Application:
    """The tutorial's echo chat and the chat rooms, declared with ``@spry.route``."""
    if under_gunicorn():
        configure_logging()
    url = os.environ.get(BROKER_ENV) or None
    app = await _deployable_app(keepalive_timeout)
    spry.init_app(app, broker=url)
    _serve_metrics(app)
    log.info("Chat rooms broker: %s (pid %d)", app[FANOUT_KEY].broker, os.getpid())
    return app


async def create_file_routes_app(*, keepalive_timeout: float | None = None) -> web.Application:
    """Only ``GET /chat`` and the token-guarded ``GET /private/chat``, from ``routes/``."""
    if under_gunicorn():
        configure_logging()
    app = await _deployable_app(keepalive_timeout)
    Spry(app, routes=ROUTES)
    _serve_metrics(app)
    return app


def keepalive_from_env() -> float:
    """``SPRY_KEEPALIVE_TIMEOUT`` in seconds (default 15).

    Raises:
        ValueError: it is not a positive number.
    """
    text = os.environ.get(KEEPALIVE_ENV, "")
    try:
        value = float(text) if text else DEFAULT_KEEPALIVE_TIMEOUT
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f"{KEEPALIVE_ENV} must be a positive number of seconds, got {text!r}")
    return value


async def _deployable_app(keepalive_timeout: float | None) -> web.Application:
    """An application whose connections are bounded the same under every runner."""
    timeout = keepalive_from_env() if keepalive_timeout is None else keepalive_timeout
    app = web.Application(handler_args={"keepalive_timeout": timeout})
    trusted = os.environ.get(TRUSTED_PROXIES_ENV, "").strip()
    if trusted:
        try:
            from aiohttp_remotes import XForwardedStrict
            from aiohttp_remotes import setup as setup_remotes
        except ImportError:
            raise RuntimeError(
                f"{TRUSTED_PROXIES_ENV} needs aiohttp-remotes: pip install 'aiohttp_spry[proxy]'"
            ) from None

        proxies = [part.strip() for part in trusted.split(",") if part.strip()]
        # One hop: nginx in front. Its middleware goes first, so every route,
        # log line and the same-origin check see the client, not the proxy.
        await setup_remotes(app, XForwardedStrict([proxies], white_paths=[METRICS_PATH]))
        log.info("Trusting X-Forwarded-* from %s", ", ".join(proxies))
    return app


def _serve_metrics(app: web.Application) -> None:
    if os.environ.get(METRICS_ENV, "1") == "0":
        return
    if importlib.util.find_spec("prometheus_client") is None:
        return  # the extra is not installed: no /metrics
    from prometheus_client import CollectorRegistry

    from aiohttp_spry.metrics import enable_metrics, metrics_handler

    # Its own registry: the application's figures only, and several
    # applications in one process (tests) never collide.
    enable_metrics(app, registry=CollectorRegistry())
    app.router.add_get(METRICS_PATH, metrics_handler, allow_head=False)
