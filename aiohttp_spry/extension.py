"""Spry: the extension object: configuration, ``init_app``, and the decorators."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar, overload

from aiohttp import hdrs, web

from .asyncapi import Fields, Messages, channel_spec, document
from .endpoint import Handler, HeadRoutes, NotFoundMiddleware, Route, RouteEndpoint
from .exceptions import RouteConflictError
from .file_routes import FileHook, load_middleware_folder, load_routes
from .hooks import LifecycleHooks, load_hooks
from .pipeline import (
    ErrorHandler,
    Hooks,
    Middleware,
    Scope,
    check_error_handler,
    check_middleware,
    request_methods,
)
from .public import PublicFile, scan_public
from .pubsub import FANOUT_KEY, Broker, Fanout, broker_from_url
from .pubsub.history import HistoryPolicy, HistoryRules
from .pubsub.positions import Position
from .server_log import quiet_bad_requests
from .settings import ExtensionSettings, WebSocketOptions, WebSocketSettings
from .websocket.masking import warn_if_unavailable
from .websocket.session import SESSIONS_KEY, SessionRegistry, WebSocket

if TYPE_CHECKING:
    from typing_extensions import Unpack

H = TypeVar("H", bound=Handler)
M = TypeVar("M", bound=Middleware)
E = TypeVar("E", bound=ErrorHandler)

_KNOWN_METHODS: Final = frozenset({*hdrs.METH_ALL, hdrs.METH_ANY})


class Spry:
    """Spry routes and route-level WebSocket upgrades for an aiohttp application.

    Create it with the application, or without one and call :meth:`init_app`
    later (once per application; one ``Spry`` may serve several, and holds
    them weakly). Keyword arguments set extension-wide defaults for every
    WebSocket (see :class:`WebSocketSettings`); routes and ``upgrade()`` can
    override them. Routes, middleware and error handlers are declared before
    an application starts; after that, declaring one raises ``RuntimeError``.

    Example::

        app = web.Application()
        spry = Spry(app)

        @spry.route("/chat")
        async def chat(event: Event) -> web.StreamResponse:
            if not event.ws.is_upgrade_request:
                return Response.json({"mode": "http"})

            async def session(ws: WebSocket) -> None:
                async for message in ws.events:
                    if isinstance(message, TextDataReceived):
                        await ws.send_text(f"Echo: {message.text}")

            return event.ws.upgrade(session, protocol="spry-chat-v1")

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

    Raises:
        TypeError, ValueError: a setting of the wrong type or out of range
            (the message names it), or a ``broker`` that is neither a
            :class:`Broker`, a URL nor ``None``.
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
        self.config = ExtensionSettings(
            debug=debug,
            shutdown_timeout=shutdown_timeout,
            max_sessions=max_sessions,
            max_queued=max_queued,
        )
        _check_broker(broker)
        if app is not None:
            _check_app(app)
        self.settings = WebSocketSettings().evolve_from(**websocket)
        self._broker = broker
        self._history = HistoryRules()
        self._routes: list[Route] = []
        self._public: list[PublicFile] = []
        self._lifecycle: list[LifecycleHooks] = []
        self._apps: weakref.WeakSet[web.Application] = weakref.WeakSet()
        self._hooks = Hooks()
        self._not_found = NotFoundMiddleware(self._hooks, self.settings, debug=debug)
        if routes is not None:
            self.load_routes(routes)
        if app is not None:
            self.init_app(app)

    @property
    def debug(self) -> bool:
        """Whether 500 responses carry tracebacks."""
        return self.config.debug

    def init_app(self, app: web.Application, *, broker: Broker | str | None = None) -> None:
        """Register this extension's routes on ``app`` and close its sessions on shutdown.

        Routes declared later are added to ``app`` too, until it starts.
        ``broker`` (else the one given to :class:`Spry`, else in-memory) starts
        with the application and closes at its cleanup.

        Raises:
            TypeError: ``app`` is not an aiohttp application, or ``broker`` is
                neither a :class:`Broker`, a URL nor ``None``.
            RuntimeError: ``app`` already has a Spry extension, or has started.
            ValueError: ``broker`` is a URL of an unknown scheme.
        """
        _check_app(app)
        _check_broker(broker)
        if SPRY_KEY in app:
            raise RuntimeError(f"{app!r} already has a Spry extension; call init_app() once")
        if _started(app):
            raise RuntimeError(
                f"{app!r} has already started; call init_app() before running the application"
            )
        chosen = broker if broker is not None else self._broker
        fanout = Fanout(
            chosen if isinstance(chosen, Broker) else broker_from_url(chosen),
            self.config.max_queued,
            self._history,
        )
        app[SPRY_KEY] = self
        app[SESSIONS_KEY] = SessionRegistry(fanout, self.config.max_sessions)
        app[FANOUT_KEY] = fanout
        app[_HEAD_ROUTES_KEY] = HeadRoutes()
        for public in self._public:
            _register_public(app, public)
        for route in self._routes:
            self._register(app, route)
        app.on_startup.append(_on_startup)
        app.on_startup.append(fanout.start)
        app.on_shutdown.append(self._on_shutdown)
        app.on_cleanup.append(fanout.close)
        if self._hooks.has_error_handlers:
            app.middlewares.append(self._not_found)
        for lifecycle in self._lifecycle:
            lifecycle.wire(app)
        self._apps.add(app)

    def route(
        self,
        path: str,
        *,
        methods: Iterable[str] = ("GET",),
        name: str | None = None,
        middleware: Iterable[Middleware] = (),
        on_error: ErrorHandler | None = None,
        receives: Messages | None = None,
        sends: Messages | None = None,
        subprotocols: Iterable[str] = (),
        query: Fields | None = None,
        headers: Fields | None = None,
        **websocket: Unpack[WebSocketOptions],
    ) -> Callable[[H], H]:
        """Declare a route: ``@spry.route("/rooms/{id}", methods=["GET", "POST"])``.

        ``path`` uses aiohttp's syntax. The handler, sync or async, gets an
        :class:`Event` and returns an aiohttp response, ``dict``/``list``
        (JSON), ``str`` (text), ``bytes``, ``None`` (204), or the result of
        ``event.ws.upgrade()``. Only the listed methods reach it (aiohttp
        answers others with 405); ``"*"`` means any. A GET route answers HEAD
        too (aiohttp sends the headers without the body), unless a route
        declares HEAD for the same path. All of them share one
        aiohttp resource, which ``name`` names. ``middleware`` and
        ``on_error`` apply to this route alone, innermost (Spry's
        ``defineHandler``). WebSocket keywords override the extension defaults.

        ``receives`` (client → server) and ``sends`` (server → client) declare
        the route's WebSocket messages for :meth:`asyncapi`: a JSON Schema
        ``dict``, an attrs class, ``str`` (text frames), ``bytes`` (binary
        frames), or a list of those. ``subprotocols``, ``query`` and
        ``headers`` (``{name: JSON Schema or type}``) describe its handshake.
        They are documentation only: checked here, never per request.

        Raises:
            TypeError: ``path`` is not a ``str`` (``@spry.route`` needs
                parentheses: ``@spry.route("/path")``), ``methods`` is a
                ``str``, a middleware is not an async function, a message
                declaration is none of the forms above, or the decorated
                object is not callable.
            ValueError: a path not starting with ``/``, an unknown method,
                a ``name`` already used, or an invalid setting.
            RuntimeError: an application of this extension has started.
        """
        if callable(path):
            raise TypeError(
                f'@spry.route needs the path in parentheses: write @spry.route("/path") '
                f"above {getattr(path, '__name__', path)!r}, not @spry.route"
            )
        if not isinstance(path, str):
            raise TypeError(
                f"route path must be a str like '/chat', got {type(path).__name__} {path!r}"
            )
        if not path.startswith("/"):
            raise ValueError(f"route path must start with '/', got {path!r}")
        if isinstance(methods, str):
            raise TypeError(
                f"route {path!r}: methods takes a list like [{methods!r}], got the str {methods!r}"
            )
        checked = tuple(dict.fromkeys(str(method).upper() for method in methods))
        unknown = [method for method in checked if method not in _KNOWN_METHODS]
        if not checked or unknown:
            raise ValueError(
                f"route {path!r}: methods must be HTTP methods like 'GET' or '*', "
                f"got {list(methods)}"
            )
        if name is not None and not isinstance(name, str):
            raise TypeError(f"route {path!r}: name must be a str, got {name!r}")
        settings = self.settings.evolve_from(**websocket)
        chain = tuple(check_middleware(mw) for mw in middleware)
        if on_error is not None:
            check_error_handler(on_error)
        channel = channel_spec(
            path,
            receives=receives,
            sends=sends,
            subprotocols=subprotocols,
            query=query,
            headers=headers,
        )

        def decorator(handler: H) -> H:
            if not callable(handler):
                raise TypeError(
                    f"@spry.route({path!r}) decorates a handler function taking (event), "
                    f"got {type(handler).__name__} {handler!r}"
                )
            self._refuse_if_started(f"route {path!r}")
            if name is not None:
                for app in self._apps:
                    if name in app.router.named_resources():
                        raise ValueError(
                            f"route {path!r}: the name {name!r} is already used on {app!r}"
                        )
            self._declare(
                Route(
                    path,
                    handler,
                    checked,
                    name,
                    settings,
                    chain,
                    on_error,
                    _source(handler),
                    channel,
                )
            )
            return handler

        return decorator

    def use(
        self, middleware: M, *, path: str | None = None, methods: Iterable[str] | None = None
    ) -> M:
        """Add a middleware for every route, or for the routes under ``path``.

        ``async def middleware(event, next)`` runs before the route handler; it
        may act after ``response = await next()``, return early without calling
        ``next``, or raise :class:`HTTPError`. Middlewares run outer to inner in
        registration order. They see an upgrade a route returns before its
        session starts, and never run per WebSocket message. ``methods``
        (``["GET"]``, which covers HEAD too) limits it to requests of those
        methods, like Spry's ``_middleware.get.dart``.

        Example::

            async def auth(event: Event, next: Next) -> web.StreamResponse:
                if event.headers.get("Authorization") != "Bearer secret":
                    raise HTTPError(401)
                return await next()

            spry.use(auth, path="/admin")

        Raises:
            TypeError: ``middleware`` is not an async function.
            ValueError: ``path`` does not start with ``/``, or ``methods`` is
                empty, a ``str`` or holds ``"*"``.
            RuntimeError: an application of this extension has started.
        """
        scope = Scope.of(path)
        scoped_methods = _scoped_methods(methods)
        check_middleware(middleware)
        self._refuse_if_started(f"middleware {middleware!r}")
        self._hooks.add_middleware(scope, middleware, scoped_methods)
        return middleware

    def middleware(self, middleware: M) -> M:
        """Decorator form of :meth:`use` for a middleware that applies to every route."""
        return self.use(middleware)

    def on_error(
        self, handler: E, *, path: str | None = None, methods: Iterable[str] | None = None
    ) -> E:
        """Add an error handler for every route, or for the routes under ``path``.

        ``on_error(error, event)`` (sync or async) gets what a handler or
        middleware raised, and returns a response (or any handler return
        value) to answer with. Handlers are tried innermost first (a route's
        own, then deeper paths, then extension-wide); one that returns
        ``None`` or raises passes the error (or its new one) outward. An
        unhandled :class:`HTTPError` becomes its response; anything else is
        logged and answered with 500. Unknown paths under ``path`` reach the
        handler as :class:`NotFoundError`. aiohttp's ``web.HTTPException``s
        and WebSocket session errors never reach error handlers. ``methods``
        limits it to requests of those methods (``_error.get.dart``).

        Example::

            def friendly_426(error: Exception, event: Event) -> dict[str, str] | None:
                if isinstance(error, HTTPError) and error.status == 426:
                    return {"message": "connect with a WebSocket client"}
                return None

            spry.on_error(friendly_426, path="/private")

        Raises:
            TypeError: ``handler`` is not callable.
            ValueError: ``path`` does not start with ``/``, or ``methods`` is
                empty, a ``str`` or holds ``"*"``.
            RuntimeError: an application of this extension has started.
        """
        scope = Scope.of(path)
        scoped_methods = _scoped_methods(methods)
        check_error_handler(handler)
        self._refuse_if_started(f"error handler {handler!r}")
        self._hooks.add_error_handler(scope, handler, scoped_methods)
        for app in self._apps:
            if self._not_found not in app.middlewares:
                app.middlewares.append(self._not_found)
        return handler

    def error_handler(self, handler: E) -> E:
        """Decorator form of :meth:`on_error` for a handler that applies to every route."""
        return self.on_error(handler)

    def load_routes(self, directory: str | Path) -> None:
        """Declare the routes of a Spry-style ``routes/`` folder (:mod:`~aiohttp_spry.scanner`).

        ``index.py`` → ``/``, ``chat.get.py`` → ``GET /chat``, ``users/[id].py``
        → ``/users/{id}``, ``[[id]].py`` → optional, ``[...slug].py`` → a
        catch-all (at the root: the application's fallback), ``[name].[ext].py``
        → parameters inside a segment; ``_middleware[.method].py``
        (``middleware``) and ``_error[.method].py`` (``on_error``) apply to
        their folder and below.

        Raises:
            FileNotFoundError: ``directory`` does not exist.
            RouteConflictError: two files claim one route, or a file is malformed
                (the message names the files).
            RuntimeError: an application of this extension has started.
        """
        self._refuse_if_started(f"routes folder {str(directory)!r}")
        found = load_routes(directory)
        self._use_file_hooks(found.middleware)
        for hook in found.error_handlers:
            for handler in hook.functions:
                self.on_error(handler, path=hook.scope, methods=hook.methods)
        for route in found.routes:
            self._declare(
                Route(
                    route.path,
                    route.handler,
                    route.methods,
                    None,
                    self.settings,
                    route.middleware,
                    route.on_error,
                    str(route.file),
                )
            )

    def load_middleware(self, directory: str | Path) -> None:
        """Add a global ``middleware/`` folder: each file's ``middleware`` runs for every
        route, in file-name order (``01_logger.py``, ``02_auth.get.py``: the method
        suffix limits a file to that method), outside the routes folder's own.

        Raises:
            FileNotFoundError: ``directory`` does not exist.
            RouteConflictError: a file does not define a valid ``middleware``.
            RuntimeError: an application of this extension has started.
        """
        self._refuse_if_started(f"middleware folder {str(directory)!r}")
        self._use_file_hooks(load_middleware_folder(directory))

    def load_public(self, directory: str | Path) -> None:
        """Serve a ``public/`` folder's files for GET and HEAD, before routing
        (:mod:`~aiohttp_spry.public` writes down the rule that keeps a file from
        shadowing a route).

        Raises:
            FileNotFoundError: ``directory`` does not exist.
            RouteConflictError: a file has the path of a parameterless GET route.
            RuntimeError: an application of this extension has started.
        """
        self._refuse_if_started(f"public folder {str(directory)!r}")
        files = scan_public(directory)
        for public in files:
            for route in self._routes:
                _check_public_route(public, route)
        for public in files:
            for app in self._apps:
                _register_public(app, public)
            self._public.append(public)

    def load_hooks(self, file: str | Path) -> None:
        """Use a ``hooks.py``: ``on_start(app)`` and ``on_stop(app)`` on each
        application's signals, ``on_error(error, event)`` as the outermost error
        handler (see :mod:`~aiohttp_spry.hooks`).

        Raises:
            FileNotFoundError: ``file`` does not exist.
            RouteConflictError: a hook has the wrong signature.
            RuntimeError: an application of this extension has started.
        """
        self._refuse_if_started(f"hooks file {str(file)!r}")
        hooks = load_hooks(file)
        if hooks.on_error is not None:
            # Registered first at the widest scope, so it is tried last.
            check_error_handler(hooks.on_error)
            self._hooks.add_error_handler(Scope.of(None), hooks.on_error, first=True)
            for app in self._apps:
                if self._not_found not in app.middlewares:
                    app.middlewares.append(self._not_found)
        for app in self._apps:
            hooks.wire(app)
        self._lifecycle.append(hooks)

    def load_project(self, directory: str | Path) -> None:
        """Load a Spry project folder: ``hooks.py``, ``middleware/``, ``routes/`` and
        ``public/``, each when present (``spry serve`` does this).

        Raises:
            FileNotFoundError: ``directory`` has neither ``routes/`` nor ``public/``.
            RouteConflictError: a file is refused (the message names it).
            RuntimeError: an application of this extension has started.
        """
        root = Path(directory).resolve()
        if not (root / "routes").is_dir() and not (root / "public").is_dir():
            raise FileNotFoundError(
                f"{str(directory)!r} ({root}) is not a Spry project: it has no routes/ "
                "and no public/ folder"
            )
        if (root / "hooks.py").is_file():
            self.load_hooks(root / "hooks.py")
        if (root / "middleware").is_dir():
            self.load_middleware(root / "middleware")
        if (root / "routes").is_dir():
            self.load_routes(root / "routes")
        if (root / "public").is_dir():
            self.load_public(root / "public")

    def history(
        self, prefix: str, *, size: int, ttl: float, meta_ttl: float = 86_400.0
    ) -> HistoryPolicy:
        """Keep history for every topic starting with ``prefix``: its last ``size``
        messages, for ``ttl`` seconds after its latest one.

        Messages of such a topic get a :class:`~aiohttp_spry.pubsub.positions.Position`
        (epoch, offset) from the broker, and a session that comes back with
        ``await ws.subscribe(topic, since=position)`` gets exactly what it
        missed (or ``recovered=False``). Topics matching no rule keep none and
        cost what they always did. The longest matching prefix wins.

        Example::

            spry = Spry(app, broker="redis://127.0.0.1:6379/0")
            spry.history("room:", size=200, ttl=600)

        Raises:
            TypeError, ValueError: a bad setting (the message names it), or a
                second rule for the same prefix.
            RuntimeError: an application of this extension has started.
        """
        self._refuse_if_started(f"history rule {prefix!r}")
        policy = HistoryPolicy(prefix, size, ttl, meta_ttl)
        self._history.add(policy)
        return policy

    @overload
    async def publish(
        self, app: web.Application, topic: str, data: Any, *, ack: Literal[False] = False
    ) -> int: ...

    @overload
    async def publish(
        self, app: web.Application, topic: str, data: Any, *, ack: Literal[True]
    ) -> Position: ...

    async def publish(
        self, app: web.Application, topic: str, data: Any, *, ack: bool = False
    ) -> int | Position:
        """Send ``data`` to every subscriber of ``topic``, in every process.

        For HTTP routes and background tasks (a session uses
        :meth:`WebSocket.publish <aiohttp_spry.WebSocket.publish>`, which skips
        the sender). ``str`` → text message, ``bytes`` → binary, anything else
        → JSON text, encoded once.

        Example::

            @spry.route("/rooms/{room}/announce", methods=["POST"])
            async def announce(event: Event) -> dict[str, int]:
                text = await event.request.text()
                sent = await spry.publish(event.app, f"room:{event.params['room']}", text)
                return {"delivered_here": sent}

        With ``ack=True`` (topics with history only) it waits until the broker
        has numbered the message and returns its position.

        Returns:
            How many sessions of this process it was delivered or queued to
            (0 for a topic with history on Redis); with ``ack=True``, the
            message's :class:`~aiohttp_spry.pubsub.positions.Position`.

        Raises:
            TypeError: ``data`` is not JSON-serializable.
            ValueError: ``ack=True`` for a topic without history.
            KeyError: ``app`` was not initialised with Spry.
        """
        if ack:
            return await app[FANOUT_KEY].publish_positioned(topic, data)
        return app[FANOUT_KEY].publish(topic, data)

    def asyncapi(
        self,
        app: web.Application,
        *,
        title: str,
        version: str,
        description: str | None = None,
        servers: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """An AsyncAPI 3.0.0 document of ``app``'s WebSocket routes (:mod:`~aiohttp_spry.asyncapi`).

        One channel per route that declared ``receives``, ``sends``,
        ``subprotocols``, ``query`` or ``headers``; the handler's docstring
        describes it. ``servers`` is AsyncAPI's Servers Object, as is
        (``{"local": {"host": "127.0.0.1:4000", "protocol": "ws"}}``).
        The result is plain JSON data: ``web.json_response(document)`` serves it.

        Example::

            @spry.route("/asyncapi.json")
            def asyncapi(event: Event) -> dict[str, Any]:
                return spry.asyncapi(event.app, title="Chat", version="1.0.0")

        Raises:
            ValueError: ``app`` was not initialised with this extension.
            TypeError: ``title`` or ``version`` is not a non-empty ``str``.
        """
        if app.get(SPRY_KEY) is not self:
            raise ValueError(
                f"asyncapi(): {app!r} was not initialised with this Spry; call init_app(app) first"
            )
        return document(
            self._routes, title=title, version=version, description=description, servers=servers
        )

    @staticmethod
    async def presence(app: web.Application, topic: str) -> dict[str, Mapping[str, Any]]:
        """Every session present in ``topic`` (``ws.subscribe(topic, presence={...})``),
        in every process: ``{ws.id: info}``."""
        return await app[FANOUT_KEY].presence(topic)

    @staticmethod
    async def presence_count(app: web.Application, topic: str) -> int:
        """How many sessions are present in ``topic``, in every process (one cheap query)."""
        return await app[FANOUT_KEY].presence_count(topic)

    @staticmethod
    async def position(app: web.Application, topic: str) -> Position:
        """The latest position of a topic with history (offset 0: no message yet).

        Raises:
            ValueError: ``topic`` keeps no history.
        """
        return await app[FANOUT_KEY].read_position(topic)

    @staticmethod
    def subscribers(app: web.Application, topic: str) -> frozenset[WebSocket]:
        """The sessions of this process subscribed to ``topic`` on ``app`` right now."""
        return app[FANOUT_KEY].subscribers(topic)

    @staticmethod
    def sessions(app: web.Application) -> tuple[WebSocket, ...]:
        """The WebSocket sessions open on ``app`` right now."""
        return app[SESSIONS_KEY].sessions

    def _refuse_if_started(self, what: str) -> None:
        """Validation before mutation: nothing is recorded for a started application.

        Raises:
            RuntimeError: an application of this extension has started.
        """
        for app in self._apps:
            if _started(app):
                raise RuntimeError(
                    f"cannot add {what}: {app!r} has already started; declare routes, "
                    "middleware and error handlers before running the application"
                )

    def _declare(self, route: Route) -> None:
        for public in self._public:
            _check_public_route(public, route)
        for app in self._apps:
            self._register(app, route)
        self._routes.append(route)

    def _use_file_hooks(self, hooks: tuple[FileHook, ...]) -> None:
        for hook in hooks:
            for middleware in hook.functions:
                self.use(middleware, path=hook.scope, methods=hook.methods)

    def _register(self, app: web.Application, route: Route) -> None:
        endpoint = RouteEndpoint(route, self._hooks, app[SESSIONS_KEY], debug=self.config.debug)
        resource = app.router.add_resource(route.path, name=route.name)
        app[_HEAD_ROUTES_KEY].register(resource, route, endpoint)

    async def _on_shutdown(self, app: web.Application) -> None:
        await app[SESSIONS_KEY].close_all(self.config.shutdown_timeout)


def _started(app: web.Application) -> bool:
    # aiohttp freezes on_startup just before running it, and pre-freezes an
    # application added as a sub-application: either way its routes are fixed.
    return app.on_startup.frozen or app.pre_frozen


def _check_app(app: object) -> None:
    if not isinstance(app, web.Application):
        raise TypeError(f"app must be an aiohttp web.Application, got {type(app).__name__} {app!r}")


def _check_broker(broker: object) -> None:
    if broker is not None and not isinstance(broker, (Broker, str)):
        raise TypeError(
            "broker must be a Broker (such as MemoryBroker()), a URL str such as "
            f"'redis://127.0.0.1:6379/0', or None; got {type(broker).__name__} {broker!r}"
        )


def _scoped_methods(methods: Iterable[str] | None) -> frozenset[str] | None:
    if methods is None:
        return None
    if isinstance(methods, str):
        raise ValueError(f"methods= takes a list like [{methods!r}], got the str {methods!r}")
    return request_methods(methods)


def _source(handler: Any) -> str:
    return getattr(handler, "__qualname__", None) or repr(handler)


def _register_public(app: web.Application, public: PublicFile) -> None:
    resource = app.router.add_resource(public.url_path)
    resource.add_route("GET", public.handle)
    resource.add_route("HEAD", public.handle)


def _check_public_route(public: PublicFile, route: Route) -> None:
    """Rule 3 of :mod:`~aiohttp_spry.public`: a file and a parameterless GET route
    on one path cannot both be served."""
    if route.path != public.url_path or not {"GET", "HEAD", "*"} & set(route.methods):
        return
    raise RouteConflictError(
        f"{public.file} and {route.source or route.path} both serve GET {route.path}; "
        "rename the file or move the route"
    )


async def _on_startup(app: web.Application) -> None:
    warn_if_unavailable()
    quiet_bad_requests()  # aiohttp's parser refusals: one WARNING line each, rate-limited


#: One application's HEAD routing (which GET routes answer HEAD).
_HEAD_ROUTES_KEY: Final = web.AppKey("aiohttp_spry.head_routes", HeadRoutes)
#: The :class:`Spry` an application was initialised with.
SPRY_KEY: Final = web.AppKey("aiohttp_spry.spry", Spry)
