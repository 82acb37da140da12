"""aiohttp_spry: Spry-style routes and route-level WebSocket upgrades for aiohttp.

Public names only; each lives in the module of its job (README "Architecture")::

    from aiohttp import web
    from aiohttp_spry import Event, Spry

    app = web.Application()
    spry = Spry(app)

    @spry.route("/hello/{name}")
    def hello(event: Event) -> dict[str, str]:
        return {"hello": event.params["name"]}
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _distribution_version

from .event import Event
from .exceptions import HTTPError, NotFoundError, PeerNotReadingError, RouteConflictError
from .extension import SPRY_KEY, Spry
from .limits import raise_open_files_limit
from .pipeline import ErrorHandler, Middleware, Next
from .pubsub import (
    Broker,
    HistoryPolicy,
    MemoryBroker,
    Position,
    PresenceChange,
    PresenceEvent,
    SubscribeResult,
    broker_from_url,
    parse_position,
)
from .responses import Response
from .settings import WebSocketOptions, WebSocketSettings
from .websocket import (
    SESSIONS_KEY,
    BinaryDataReceived,
    CloseCode,
    CloseReceived,
    EventWebSocket,
    TextDataReceived,
    UpgradeResponse,
    WebSocket,
    WebSocketMessage,
)

try:
    #: The installed distribution's version (``setup.cfg`` is its one source).
    __version__: str = _distribution_version("aiohttp_spry")
except PackageNotFoundError:  # imported from a checkout that was never installed
    __version__ = "0+unknown"

__all__ = [
    "SESSIONS_KEY",
    "SPRY_KEY",
    "BinaryDataReceived",
    "Broker",
    "CloseCode",
    "CloseReceived",
    "ErrorHandler",
    "Event",
    "EventWebSocket",
    "HTTPError",
    "HistoryPolicy",
    "MemoryBroker",
    "Middleware",
    "Next",
    "NotFoundError",
    "PeerNotReadingError",
    "Position",
    "PresenceChange",
    "PresenceEvent",
    "Response",
    "RouteConflictError",
    "Spry",
    "SubscribeResult",
    "TextDataReceived",
    "UpgradeResponse",
    "WebSocket",
    "WebSocketMessage",
    "WebSocketOptions",
    "WebSocketSettings",
    "__version__",
    "broker_from_url",
    "parse_position",
    "raise_open_files_limit",
]
