"""Event: what a Spry handler receives, a request-scoped view over the aiohttp request."""

from __future__ import annotations

from aiohttp import web
from multidict import CIMultiDictProxy, MultiMapping
from yarl import URL

from .event_locals import Locals
from .params import Params
from .settings import WebSocketSettings
from .websocket.handshake import EventWebSocket


class Event:
    """One request as a Spry handler sees it.

    Built for every request, so it stores only the request and the route's
    settings; everything else is read from the request when asked for, and
    ``locals`` and ``ws`` are made on first use.

    Example::

        @spry.route("/rooms/{room}")
        def room(event: Event) -> dict[str, Any]:
            return {"room": event.params["room"], "q": event.query.get("q")}

    Attributes:
        request: the aiohttp request.
        settings: the WebSocket settings of the route that matched.
    """

    __slots__ = ("_locals", "_params", "_ws", "request", "settings")

    def __init__(self, request: web.Request, settings: WebSocketSettings) -> None:
        self.request = request
        self.settings = settings
        self._locals: Locals | None = None
        self._params: Params | None = None
        self._ws: EventWebSocket | None = None

    @property
    def app(self) -> web.Application:
        """The aiohttp application (the sub-application, for a route inside one)."""
        return self.request.app

    @property
    def method(self) -> str:
        """The request method, upper case: ``"GET"``."""
        return self.request.method

    @property
    def url(self) -> URL:
        """The absolute request URL."""
        return self.request.url

    @property
    def pathname(self) -> str:
        """The decoded path without the query string: ``"/rooms/a b"``."""
        return self.request.path

    @property
    def path(self) -> str:
        """The path with the query string, as sent: ``"/rooms/a%20b?q=1"``."""
        return self.request.path_qs

    @property
    def query(self) -> MultiMapping[str]:
        """The query string parameters."""
        return self.request.query

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        """The request headers (case-insensitive)."""
        return self.request.headers

    @property
    def params(self) -> Params:
        """The route's path parameters: ``{"room": "lobby"}`` for ``/rooms/{room}``, with
        ``required(name)``, ``int(name)`` and ``decode(name, fn)`` (400 when missing or
        malformed)."""
        if self._params is None:
            self._params = Params(self.request.match_info)
        return self._params

    @property
    def peer(self) -> str | None:
        """The peer's address (``request.remote``): an IP, or ``None`` if unknown."""
        return self.request.remote

    @property
    def locals(self) -> Locals:
        """A dict for this request only, for middleware, handlers and helpers to share
        values, with Spry's ``get(key)`` / ``set(key, value)`` / ``has(key)``."""
        if self._locals is None:
            self._locals = Locals()
        return self._locals

    @property
    def ws(self) -> EventWebSocket:
        """The WebSocket side of this request: checks, protocols and ``upgrade()``."""
        if self._ws is None:
            self._ws = EventWebSocket(self.request, self.settings)
        return self._ws

    @property
    def upgraded(self) -> bool:
        """Whether ``event.ws.upgrade()`` accepted this request."""
        return self._ws is not None and self._ws.upgraded

    def __str__(self) -> str:
        return f"Event({self.method} {self.pathname} peer={self.peer})"

    __repr__ = __str__
