"""aiohttp_spry: Spry-style routes and route-level WebSocket upgrades for aiohttp.

from aiohttp import web
from aiohttp_spry import Event, Response, Spry

app = web.Application()
spry = Spry(app)

@spry.route("/hello/{name}")
def hello(event: Event) -> dict[str, str]:
    return {"hello": event.params["name"]}
"""

from .errors import HTTPError
from .event import Event
from .extension import SPRY_KEY, Spry
from .file_routes import RouteConflictError
from .pipeline import ErrorHandler, Middleware, Next, NotFoundError
from .pubsub import Broker, MemoryBroker, broker_from_url
from .responses import Response
from .sessions import SESSIONS_KEY
from .settings import WebSocketOptions, WebSocketSettings
from .websocket import (
    BinaryDataReceived,
    CloseCode,
    CloseReceived,
    PeerNotReadingError,
    TextDataReceived,
    UpgradeResponse,
    WebSocket,
)

__version__ = "0.1.0"

__all__ = [
    "SESSIONS_KEY",
    "SPRY_KEY",
    "BinaryDataReceived",
    "Broker",
    "CloseCode",
    "CloseReceived",
    "ErrorHandler",
    "Event",
    "HTTPError",
    "MemoryBroker",
    "Middleware",
    "Next",
    "NotFoundError",
    "PeerNotReadingError",
    "Response",
    "RouteConflictError",
    "Spry",
    "TextDataReceived",
    "UpgradeResponse",
    "WebSocket",
    "WebSocketOptions",
    "WebSocketSettings",
    "__version__",
    "broker_from_url",
]
