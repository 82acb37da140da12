"""Spry: the extension object, its routes, and the wrapper that runs them on aiohttp."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, TypeVar

import attrs
from aiohttp import web

from .errors import HTTPError, internal_error_response
from .event import Event
from .responses import to_response
from .settings import UNSET, WebSocketSettings, _Unset
from .websocket import CloseCode, UpgradeResponse, WebSocket, describe_request

logger = logging.getLogger("aiohttp_spry")

#: A Spry route handler: sync or async, takes the :class:`Event`.
Handler = Callable[[Event], Any]
H = TypeVar("H", bound=Handler)

_KNOWN_METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "*"}
)


class SessionRegistry:
    """The open WebSocket sessions of one application."""

    __slots__ = ("closing", "sessions")

    def __init__(self) -> None:
        self.sessions: set[WebSocket] = set()
        self.closing = False


#: The application's live WebSocket sessions.
SESSIONS_KEY: Final = web.AppKey("aiohttp_spry.sessions", SessionRegistry)


@attrs.frozen
class Route:
    """A route as declared with :meth:`Spry.route`."""

    path: str
    handler: Handler
    methods: tuple[str, ...]
    name: str | None
    settings: WebSocketSettings


class Spry:
    """Spry routes and route-level WebSocket upgrades for an aiohttp application.

    Create it with the application, or without one and call :meth:`init_app`
    later (once per application; one ``Spry`` may serve several). Keyword
    arguments set extension-wide defaults for every WebSocket (see
    :class:`WebSocketSettings`); routes and ``upgrade()`` can override them.

    Example:
        >>> app = web.Application()
        >>> spry = Spry(app)
        >>> @spry.route("/chat")
        ... async def chat(event: Event) -> web.StreamResponse:
        ...     if not event.ws.is_upgrade_request:
        ...         return Response.json({"mode": "http"})
        ...     async def session(ws: WebSocket) -> None:
        ...         async for message in ws.events:
        ...             if isinstance(message, TextDataReceived):
        ...                 await ws.send_text(f"Echo: {message.text}")
        ...     return event.ws.upgrade(session, protocol="spry-chat-v1")

    Args:
        app: the application to initialise now, if any.
        debug: put tracebacks in 500 responses (never in production).
        shutdown_timeout: seconds that ``on_shutdown`` waits for open sessions
            to finish their 1001 close handshake before dropping them.
        heartbeat, max_msg_size, compress, receive_timeout, strict_protocols:
            WebSocket defaults, see :class:`WebSocketSettings`.
    """

    def __init__(
        self,
        app: web.Application | None = None,
        *,
        debug: bool = False,
        shutdown_timeout: float = 3.0,
        heartbeat: float | None = None,
        max_msg_size: int = 4 * 1024 * 1024,
        compress: bool = True,
        receive_timeout: float | None = None,
        strict_protocols: bool = False,
    ) -> None:
        if shutdown_timeout <= 0:
            raise ValueError(f"shutdown_timeout must be > 0 seconds, got {shutdown_timeout!r}")
        self.debug = debug
        self.shutdown_timeout = shutdown_timeout
        self.settings = WebSocketSettings(
            heartbeat=heartbeat,
            max_msg_size=max_msg_size,
            compress=compress,
            receive_timeout=receive_timeout,
            strict_protocols=strict_protocols,
        )
        self._routes: list[Route] = []
        self._apps: list[web.Application] = []
        if app is not None:
            self.init_app(app)

    def init_app(self, app: web.Application) -> None:
        """Register this extension's routes on ``app`` and close its sessions on shutdown.

        Routes declared later are added to ``app`` too, until it starts.

        Raises:
            RuntimeError: ``app`` already has a Spry extension.
        """
        if SPRY_KEY in app:
            raise RuntimeError(f"{app!r} already has a Spry extension; call init_app() once")
        app[SPRY_KEY] = self
        app[SESSIONS_KEY] = SessionRegistry()
        app.on_shutdown.append(self._on_shutdown)
        self._apps.append(app)
        for route in self._routes:
            self._register(app, route)

    def route(
        self,
        path: str,
        *,
        methods: Iterable[str] = ("GET",),
        name: str | None = None,
        heartbeat: float | _Unset | None = UNSET,
        max_msg_size: int | _Unset = UNSET,
        compress: bool | _Unset = UNSET,
        receive_timeout: float | _Unset | None = UNSET,
        strict_protocols: bool | _Unset = UNSET,
    ) -> Callable[[H], H]:
        """Declare a route: ``@spry.route("/rooms/{id}", methods=["GET", "POST"])``.

        ``path`` uses aiohttp's syntax. The handler, sync or async, gets an
        :class:`Event` and returns an aiohttp response, ``dict``/``list``
        (JSON), ``str`` (text), ``bytes``, ``None`` (204), or the result of
        ``event.ws.upgrade()``. Only the listed methods reach it (aiohttp
        answers others with 405); ``"*"`` means any. WebSocket keywords override
        the extension defaults for this route.

        Raises:
            ValueError: an unknown method or an invalid setting.
        """
        checked = tuple(dict.fromkeys(method.upper() for method in methods))
        unknown = [method for method in checked if method not in _KNOWN_METHODS]
        if not checked or unknown:
            raise ValueError(
                f"route {path!r}: methods must be HTTP methods like 'GET' or '*', "
                f"got {list(methods)}"
            )
        settings = self.settings.evolve_from(
            heartbeat=heartbeat,
            max_msg_size=max_msg_size,
            compress=compress,
            receive_timeout=receive_timeout,
            strict_protocols=strict_protocols,
        )

        def decorator(handler: H) -> H:
            route = Route(path, handler, checked, name, settings)
            self._routes.append(route)
            for app in self._apps:
                self._register(app, route)
            return handler

        return decorator

    @staticmethod
    def sessions(app: web.Application) -> tuple[WebSocket, ...]:
        """The WebSocket sessions open on ``app`` right now."""
        return tuple(app[SESSIONS_KEY].sessions)

    def _register(self, app: web.Application, route: Route) -> None:
        endpoint = self._endpoint(route)
        for method in route.methods:
            # One name per method would clash; name the first only.
            name = route.name if method == route.methods[0] else None
            app.router.add_route(method, route.path, endpoint, name=name)

    def _endpoint(self, route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        handler = route.handler
        settings = route.settings
        is_async = inspect.iscoroutinefunction(handler)

        async def endpoint(request: web.Request) -> web.StreamResponse:
            event = Event(request, settings)
            try:
                result = await handler(event) if is_async else handler(event)
                if not is_async and inspect.isawaitable(result):
                    result = await result
                if isinstance(result, UpgradeResponse):
                    return await self._accept(result, event)
                return to_response(result)
            except HTTPError as error:
                return error.to_response()
            except web.HTTPException:
                raise
            except Exception as exc:
                logger.error(
                    "Unhandled exception in route handler %s: %s %s",
                    getattr(handler, "__qualname__", handler),
                    describe_request(request),
                    exc,
                    exc_info=exc,
                )
                return internal_error_response(exc, debug=self.debug)

        endpoint.__name__ = getattr(handler, "__name__", "endpoint")
        endpoint.__qualname__ = getattr(handler, "__qualname__", endpoint.__name__)
        return endpoint

    async def _accept(self, response: UpgradeResponse, event: Event) -> web.StreamResponse:
        """Finish the handshake and run the session; never lets a session error escape."""
        request = event.request
        if response.event is not event:
            raise RuntimeError(
                f"{describe_request(request)}: the route returned an upgrade made for "
                "another request; return event.ws.upgrade() of this event"
            )
        registry = request.app[SESSIONS_KEY]
        if registry.closing:
            logger.warning(
                "WebSocket handshake refused (shutting down): %s", describe_request(request)
            )
            raise HTTPError(503, body="Server is shutting down.")
        try:
            await response.prepare(request)
        except web.HTTPException as refused:
            # aiohttp's own handshake checks: missing or bad key, bad version.
            logger.warning(
                "WebSocket handshake refused (%s): %s client offered %s, server speaks %s",
                refused.text,
                describe_request(request),
                list(event.ws.requested_protocols),
                list(response.offered_protocols),
            )
            raise HTTPError(refused.status, body=refused.text) from None

        ws = WebSocket(response)
        registry.sessions.add(ws)
        logger.debug("WebSocket session opened: %s", ws)
        try:
            await response.session(ws)
        except asyncio.CancelledError:
            registry.sessions.discard(ws)
            raise
        except Exception as exc:
            await self._fail_session(ws, exc)
        else:
            if not ws.closed:
                await response.close(code=CloseCode.OK)
        registry.sessions.discard(ws)
        logger.debug("WebSocket session ended with %s: %s", ws.close_code, ws)
        return response

    async def _fail_session(self, ws: WebSocket, exc: Exception) -> None:
        if ws.closed and isinstance(exc, ConnectionResetError):
            # The peer left or the server closed the session while the handler
            # was still sending: an ordinary end, not a server error.
            logger.debug("WebSocket send after close in session: %s: %s", ws, exc)
            return
        logger.error(
            "Unhandled exception in WebSocket session, closing with 1011: %s", ws, exc_info=exc
        )
        if not ws.closed:
            await ws._response.close(code=CloseCode.INTERNAL_ERROR, message=b"internal error")

    async def _on_shutdown(self, app: web.Application) -> None:
        """Close every open session with 1001, waiting at most ``shutdown_timeout``.

        aiohttp closes no WebSocket on its own, and under ``adev runserver``
        handlers get only 0.1 s after this signal, so the close handshake
        has to happen here.
        """
        registry = app[SESSIONS_KEY]
        registry.closing = True
        sessions = [ws for ws in registry.sessions if not ws.closed]
        if not sessions:
            return
        logger.info("Closing %d WebSocket session(s) with 1001 for shutdown", len(sessions))
        closes = [
            asyncio.ensure_future(
                ws._response.close(code=CloseCode.GOING_AWAY, message=b"server shutting down")
            )
            for ws in sessions
        ]
        _, pending = await asyncio.wait(closes, timeout=self.shutdown_timeout)
        if pending:
            logger.warning(
                "%d WebSocket session(s) did not finish closing within %ss; dropping them",
                len(pending),
                self.shutdown_timeout,
            )
            for task in pending:
                task.cancel()
            await asyncio.wait(pending)


#: The :class:`Spry` an application was initialised with.
SPRY_KEY: Final = web.AppKey("aiohttp_spry.spry", Spry)
