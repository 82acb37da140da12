"""Spry: the extension object, its routes, and the wrapper that runs them on aiohttp."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import attrs
from aiohttp import web

from .event import Event
from .file_routes import scan
from .pipeline import (
    ErrorHandler,
    Middleware,
    NotFoundError,
    Scope,
    Scoped,
    check_error_handler,
    check_middleware,
    handle_error,
    innermost_first,
    run_chain,
)
from .pubsub import FANOUT_KEY, Broker, Fanout, broker_from_url
from .responses import to_response
from .sessions import SESSIONS_KEY, SessionRegistry, close_all, run_session
from .settings import WebSocketOptions, WebSocketSettings
from .websocket import UpgradeResponse, WebSocket

if TYPE_CHECKING:
    from typing_extensions import Unpack

#: A Spry route handler: sync or async, takes the :class:`Event`.
Handler = Callable[[Event], Any]
H = TypeVar("H", bound=Handler)
M = TypeVar("M", bound=Middleware)
E = TypeVar("E", bound=ErrorHandler)
Endpoint = Callable[[web.Request], Awaitable[web.StreamResponse]]

_KNOWN_METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "*"}
)


@attrs.frozen
class Route:
    """A route as declared with :meth:`Spry.route`."""

    path: str
    handler: Handler
    methods: tuple[str, ...]
    name: str | None
    settings: WebSocketSettings
    middleware: tuple[Middleware, ...] = ()
    on_error: ErrorHandler | None = None


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
        routes: a routes folder to load now (see :meth:`load_routes`).
        debug: put tracebacks in 500 responses (never in production).
        shutdown_timeout: seconds that ``on_shutdown`` waits for open sessions
            to finish their 1001 close handshake before dropping them.
        max_sessions: the most WebSocket sessions one application holds at
            once; handshakes past it get 503. ``None`` (default): no cap.
        broker: how published messages reach other processes: ``None``
            (default) for in-memory (this process only), a URL such as
            ``"redis://127.0.0.1:6379/0"``, or a :class:`~aiohttp_spry.pubsub.Broker`
            (one per application). :meth:`init_app` can set its own.
        max_queued: the most published messages a slow subscriber may have
            waiting (its send buffer full); one more closes it with 1008.
        **websocket: WebSocket defaults (``heartbeat``, ``max_msg_size``,
            ``compress``, ``receive_timeout``, ``send_timeout``,
            ``strict_protocols``, ``allowed_origins``); see
            :class:`WebSocketSettings`.
    """

    def __init__(
        self,
        app: web.Application | None = None,
        *,
        routes: str | Path | None = None,
        debug: bool = False,
        shutdown_timeout: float = 3.0,
        max_sessions: int | None = None,
        broker: Broker | str | None = None,
        max_queued: int = 1000,
        **websocket: Unpack[WebSocketOptions],
    ) -> None:
        if max_queued < 1:
            raise ValueError(f"max_queued must be >= 1, got {max_queued!r}")
        if shutdown_timeout <= 0:
            raise ValueError(f"shutdown_timeout must be > 0 seconds, got {shutdown_timeout!r}")
        if max_sessions is not None and max_sessions < 1:
            raise ValueError(f"max_sessions must be >= 1 or None, got {max_sessions!r}")
        self.debug = debug
        self.shutdown_timeout = shutdown_timeout
        self.max_sessions = max_sessions
        self.max_queued = max_queued
        self._broker = broker
        self.settings = WebSocketSettings().evolve_from(**websocket)
        self._routes: list[Route] = []
        self._apps: list[web.Application] = []
        self._middleware: list[Scoped] = []
        self._error_handlers: list[Scoped] = []
        # Bumped on every middleware or error handler registration; routes
        # recompute their chains when it moved.
        self._generation = 0
        if routes is not None:
            self.load_routes(routes)
        if app is not None:
            self.init_app(app)

    def init_app(self, app: web.Application, *, broker: Broker | str | None = None) -> None:
        """Register this extension's routes on ``app`` and close its sessions on shutdown.

        Routes declared later are added to ``app`` too, until it starts.
        ``broker`` (else the one given to :class:`Spry`, else in-memory) starts
        with the application and closes at its cleanup.

        Raises:
            RuntimeError: ``app`` already has a Spry extension.
            ValueError: ``broker`` is a URL of an unknown scheme.
        """
        if SPRY_KEY in app:
            raise RuntimeError(f"{app!r} already has a Spry extension; call init_app() once")
        chosen = broker if broker is not None else self._broker
        fanout = Fanout(
            chosen if isinstance(chosen, Broker) else broker_from_url(chosen), self.max_queued
        )
        app[SPRY_KEY] = self
        app[SESSIONS_KEY] = SessionRegistry(self.max_sessions)
        app[FANOUT_KEY] = fanout
        app.on_startup.append(fanout.start)
        app.on_shutdown.append(self._on_shutdown)
        app.on_cleanup.append(fanout.close)
        self._apps.append(app)
        for route in self._routes:
            self._register(app, route)
        if self._error_handlers:
            app.middlewares.append(self._not_found_middleware)

    def route(
        self,
        path: str,
        *,
        methods: Iterable[str] = ("GET",),
        name: str | None = None,
        middleware: Iterable[Middleware] = (),
        on_error: ErrorHandler | None = None,
        **websocket: Unpack[WebSocketOptions],
    ) -> Callable[[H], H]:
        """Declare a route: ``@spry.route("/rooms/{id}", methods=["GET", "POST"])``.

        ``path`` uses aiohttp's syntax. The handler, sync or async, gets an
        :class:`Event` and returns an aiohttp response, ``dict``/``list``
        (JSON), ``str`` (text), ``bytes``, ``None`` (204), or the result of
        ``event.ws.upgrade()``. Only the listed methods reach it (aiohttp
        answers others with 405); ``"*"`` means any. ``middleware`` and
        ``on_error`` apply to this route alone, innermost (Spry's
        ``defineHandler``). WebSocket keywords override the extension defaults.

        Raises:
            ValueError: an unknown method or an invalid setting.
            TypeError: a middleware that is not an async function.
        """
        checked = tuple(dict.fromkeys(method.upper() for method in methods))
        unknown = [method for method in checked if method not in _KNOWN_METHODS]
        if not checked or unknown:
            raise ValueError(
                f"route {path!r}: methods must be HTTP methods like 'GET' or '*', "
                f"got {list(methods)}"
            )
        settings = self.settings.evolve_from(**websocket)
        chain = tuple(check_middleware(mw) for mw in middleware)
        if on_error is not None:
            check_error_handler(on_error)

        def decorator(handler: H) -> H:
            route = Route(path, handler, checked, name, settings, chain, on_error)
            self._routes.append(route)
            for app in self._apps:
                self._register(app, route)
            return handler

        return decorator

    def use(self, middleware: M, *, path: str | None = None) -> M:
        """Add a middleware for every route, or for the routes under ``path``.

        ``async def middleware(event, next)`` runs before the route handler; it
        may act after ``response = await next()``, return early without calling
        ``next``, or raise :class:`HTTPError`. Middlewares run outer to inner in
        registration order. They see an upgrade a route returns before its
        session starts, and never run per WebSocket message.

        Example:
            >>> async def auth(event: Event, next: Next) -> web.StreamResponse:
            ...     if event.headers.get("Authorization") != "Bearer secret":
            ...         raise HTTPError(401)
            ...     return await next()
            >>> spry.use(auth, path="/admin")

        Raises:
            TypeError: ``middleware`` is not an async function.
            ValueError: ``path`` does not start with ``/``.
        """
        self._middleware.append(Scoped(Scope.of(path), check_middleware(middleware), self._tick()))
        return middleware

    def middleware(self, middleware: M) -> M:
        """Decorator form of :meth:`use` for a middleware that applies to every route."""
        return self.use(middleware)

    def on_error(self, handler: E, *, path: str | None = None) -> E:
        """Add an error handler for every route, or for the routes under ``path``.

        ``on_error(error, event)`` (sync or async) gets what a handler or
        middleware raised, and returns a response (or any handler return
        value) to answer with. Handlers are tried innermost first (a route's
        own, then deeper paths, then extension-wide); one that returns
        ``None`` or raises passes the error (or its new one) outward. An
        unhandled :class:`HTTPError` becomes its response; anything else is
        logged and answered with 500. Unknown paths under ``path`` reach the
        handler as :class:`NotFoundError`. aiohttp's ``web.HTTPException``s
        and WebSocket session errors never reach error handlers.

        Example:
            >>> def friendly_426(error: Exception, event: Event) -> dict[str, str] | None:
            ...     if isinstance(error, HTTPError) and error.status == 426:
            ...         return {"message": "connect with a WebSocket client"}
            ...     return None
            >>> spry.on_error(friendly_426, path="/private")

        Raises:
            TypeError: ``handler`` is not callable.
            ValueError: ``path`` does not start with ``/``.
        """
        self._error_handlers.append(
            Scoped(Scope.of(path), check_error_handler(handler), self._tick())
        )
        for app in self._apps:
            if self._not_found_middleware not in app.middlewares:
                app.middlewares.append(self._not_found_middleware)
        return handler

    def error_handler(self, handler: E) -> E:
        """Decorator form of :meth:`on_error` for a handler that applies to every route."""
        return self.on_error(handler)

    def load_routes(self, directory: str | Path) -> None:
        """Declare the routes of a Spry-style ``routes/`` folder (:mod:`~aiohttp_spry.file_routes`).

        ``index.py`` → ``/``, ``chat.get.py`` → ``GET /chat``, ``users/[id].py``
        → ``/users/{id}``, ``[...slug].py`` → a catch-all, ``[id([0-9]+)].py`` →
        a regex parameter; ``_middleware.py`` (``middleware``) and ``_error.py``
        (``on_error``) apply to their folder and below.

        Raises:
            FileNotFoundError: ``directory`` does not exist.
            RouteConflictError: two files claim one route, or a file is malformed
                (the message names the files).
        """
        found = scan(directory)
        for hook in found.middleware:
            for middleware in hook.functions:
                self.use(middleware, path=hook.scope)
        for hook in found.error_handlers:
            for handler in hook.functions:
                self.on_error(handler, path=hook.scope)
        for route in found.routes:
            self.route(
                route.path,
                methods=route.methods,
                middleware=route.middleware,
                on_error=route.on_error,
            )(route.handler)

    async def publish(self, app: web.Application, topic: str, data: Any) -> int:
        """Send ``data`` to every subscriber of ``topic``, in every process.

        For HTTP routes and background tasks (a session uses
        :meth:`WebSocket.publish <aiohttp_spry.WebSocket.publish>`, which skips
        the sender). ``str`` → text message, ``bytes`` → binary, anything else
        → JSON text, encoded once.

        Example:
            >>> @spry.route("/rooms/{room}/announce", methods=["POST"])
            ... async def announce(event: Event) -> dict[str, int]:
            ...     text = await event.request.text()
            ...     sent = await spry.publish(event.app, f"room:{event.params['room']}", text)
            ...     return {"delivered_here": sent}

        Returns:
            How many sessions of this process it was delivered or queued to.

        Raises:
            TypeError: ``data`` is not JSON-serializable.
            KeyError: ``app`` was not initialised with Spry.
        """
        return app[FANOUT_KEY].publish(topic, data)

    @staticmethod
    def subscribers(app: web.Application, topic: str) -> frozenset[WebSocket]:
        """The sessions of this process subscribed to ``topic`` on ``app`` right now."""
        return app[FANOUT_KEY].subscribers(topic)

    @staticmethod
    def sessions(app: web.Application) -> tuple[WebSocket, ...]:
        """The WebSocket sessions open on ``app`` right now."""
        return tuple(app[SESSIONS_KEY].sessions)

    def _tick(self) -> int:
        self._generation += 1
        return self._generation

    def _register(self, app: web.Application, route: Route) -> None:
        endpoint = self._endpoint(route)
        for method in route.methods:
            # One name per method would clash; name the first only.
            name = route.name if method == route.methods[0] else None
            app.router.add_route(method, route.path, endpoint, name=name)

    def _compile(self, route: Route) -> tuple[tuple[Middleware, ...], tuple[ErrorHandler, ...]]:
        """The middleware chain (outer first) and error handlers (innermost first) of a route."""
        chain = [s.function for s in self._middleware if s.scope.covers_route(route.path)]
        handlers = innermost_first(
            [s for s in self._error_handlers if s.scope.covers_route(route.path)]
        )
        if route.on_error is not None:
            handlers.insert(0, route.on_error)
        return (*chain, *route.middleware), tuple(handlers)

    def _endpoint(self, route: Route) -> Endpoint:
        handler = route.handler
        settings = route.settings
        is_async = inspect.iscoroutinefunction(handler)
        generation = -1
        chain: tuple[Middleware, ...] = ()
        error_handlers: tuple[ErrorHandler, ...] = ()

        async def call_handler(event: Event) -> web.StreamResponse:
            result = await handler(event) if is_async else handler(event)
            if not is_async and inspect.isawaitable(result):
                result = await result
            return to_response(result)

        async def endpoint(request: web.Request) -> web.StreamResponse:
            nonlocal generation, chain, error_handlers
            if generation != self._generation:
                chain, error_handlers = self._compile(route)
                generation = self._generation
            event = Event(request, settings)
            try:
                if chain:
                    result = await run_chain(chain, event, lambda: call_handler(event))
                elif is_async:  # the hot path: no extra coroutine per request
                    result = await handler(event)
                else:
                    result = await call_handler(event)
                if type(result) is UpgradeResponse:  # exact: cheaper than an ABC check
                    return await run_session(result, event)
                return to_response(result)
            except web.HTTPException:
                raise
            except Exception as error:
                return await handle_error(error, event, error_handlers, debug=self.debug)

        endpoint.__name__ = getattr(handler, "__name__", "endpoint")
        endpoint.__qualname__ = getattr(handler, "__qualname__", endpoint.__name__)
        return endpoint

    @web.middleware
    async def _not_found_middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Offer a 404 under a scope with error handlers to those handlers.

        Installed only once this extension has error handlers, so applications
        without any pay nothing for it.
        """
        missing = request.match_info.http_exception
        if missing is None or missing.status != 404:
            return await handler(request)
        scoped = [s for s in self._error_handlers if s.scope.covers_request(request.path)]
        if not scoped:
            return await handler(request)
        error = NotFoundError(request.method, request.path)
        event = Event(request, self.settings)
        return await handle_error(error, event, innermost_first(scoped), debug=self.debug)

    async def _on_shutdown(self, app: web.Application) -> None:
        await close_all(app[SESSIONS_KEY], self.shutdown_timeout)


#: The :class:`Spry` an application was initialised with.
SPRY_KEY: Final = web.AppKey("aiohttp_spry.spry", Spry)
