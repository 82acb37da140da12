"""A route's endpoint: the aiohttp handler that runs one Spry route, and the not-found middleware.

The flow of one request: aiohttp's router → :class:`RouteEndpoint` → an
:class:`~aiohttp_spry.Event` → the middleware chain → the route handler → its
return value, turned into a response; for an upgrade, the registry opens the
session (:meth:`~aiohttp_spry.websocket.session.SessionRegistry.start`), its
handler runs, and the registry closes it (``finish``).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Final

import attrs
from aiohttp import web

from .asyncapi import ChannelSpec
from .event import Event
from .exceptions import NotFoundError
from .log import describe_request, logger
from .pipeline import (
    ErrorHandler,
    Hooks,
    Middleware,
    handle_error,
    run_chain,
)
from .responses import internal_error_response, to_response
from .scanner import path_shape
from .settings import WebSocketSettings
from .websocket.handshake import UpgradeResponse
from .websocket.session import SessionRegistry, WebSocket

#: A Spry route handler: sync or async, takes the :class:`Event`.
Handler = Callable[[Event], Any]
#: What aiohttp calls for a request.
AiohttpHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@attrs.frozen
class Route:
    """A route as declared with :meth:`Spry.route <aiohttp_spry.Spry.route>`."""

    path: str
    handler: Handler
    methods: tuple[str, ...]
    name: str | None
    settings: WebSocketSettings
    middleware: tuple[Middleware, ...] = ()
    on_error: ErrorHandler | None = None
    #: Where it was declared, for error messages: a route file, or the handler's name.
    source: str = ""

    #: What its WebSocket carries, for :mod:`~aiohttp_spry.asyncapi` (``None``: not declared).
    channel: ChannelSpec | None = None

    @property
    def request_methods(self) -> frozenset[str]:
        """The request methods that can reach it: a GET route answers HEAD too."""
        methods = frozenset(self.methods)
        return methods | {"HEAD"} if "GET" in methods else methods


class RouteEndpoint:
    """Runs one route for aiohttp: ``resource.add_route(method, endpoint.handle)``.

    The chain of middleware and error handlers is looked up on the first
    request: registrations are refused once an application starts, so it
    cannot change after that.
    """

    def __init__(
        self, route: Route, hooks: Hooks, sessions: SessionRegistry, *, debug: bool
    ) -> None:
        self.route = route
        self._sessions = sessions
        self._hooks = hooks
        self._debug = debug
        self._handler = route.handler
        self._settings = route.settings
        self._is_async = inspect.iscoroutinefunction(route.handler)
        self._chain: tuple[Middleware, ...] | None = None
        self._error_handlers: tuple[ErrorHandler, ...] = ()
        functools.update_wrapper(self, route.handler)  # name, doc, __wrapped__ for tools

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The aiohttp handler: one request through the route."""
        chain = self._chain
        if chain is None:
            chain = self._compile()
        event = Event(request, self._settings)
        upgrade: UpgradeResponse | None = None
        ws: WebSocket | None = None
        try:
            if chain:
                result = await run_chain(chain, event, lambda: self._call_handler(event))
            elif self._is_async:  # the hot path: no extra coroutine per request
                result = await self._handler(event)
            else:
                result = await self._call_handler(event)
            if type(result) is UpgradeResponse:  # exact: cheaper than an ABC check
                opened = await self._sessions.start(result, event)
                if not isinstance(opened, WebSocket):
                    return opened  # the client left before the 101
                upgrade, ws = result, opened
            else:
                response = to_response(result)
        except web.HTTPException:
            raise
        except Exception as error:
            return await handle_error(error, event, self._error_handlers, debug=self._debug)
        if upgrade is None or ws is None:
            if event.upgraded:
                return self._upgrade_not_returned(event, response)
            return response
        # The session runs here, between the registry's start() and finish(): in a
        # coroutine of its own it would hold ~300 bytes more while it is open.
        try:
            await upgrade.session(ws)
        except asyncio.CancelledError:
            self._sessions.end(ws)
            raise
        except Exception as failure:
            await self._sessions.finish(ws, failure)
        else:
            if ws.closed:  # the usual end: the peer closed and was answered
                self._sessions.end(ws)
            else:
                await self._sessions.finish(ws)
        return upgrade

    __call__ = handle

    async def _call_handler(self, event: Event) -> web.StreamResponse:
        result = self._handler(event)
        if inspect.isawaitable(result):
            result = await result
        return to_response(result)

    def _compile(self) -> tuple[Middleware, ...]:
        route = self.route
        chain, self._error_handlers = self._hooks.for_route(
            route.path, route.request_methods, route.middleware, route.on_error
        )
        self._chain = chain
        return chain

    def _upgrade_not_returned(self, event: Event, response: web.StreamResponse) -> web.Response:
        logger.error(
            "Route %s %r called event.ws.upgrade() but returned %s (status %s) instead of its "
            "result, so no WebSocket was opened; return event.ws.upgrade(...): %s",
            "/".join(self.route.methods),
            self.route.path,
            type(response).__name__,
            response.status,
            describe_request(event.request),
        )
        return internal_error_response(
            RuntimeError("event.ws.upgrade() was called but its result was not returned"),
            debug=self._debug,
        )

    def __repr__(self) -> str:
        return f"<RouteEndpoint {'/'.join(self.route.methods)} {self.route.path} {self._handler!r}>"


class HeadFallback:
    """HEAD for a GET route that has no HEAD of its own: Spry's (and Flask's) rule.

    The GET handler runs and aiohttp sends its headers without the body. When a
    route declaring HEAD (or ``"*"``) for the same path comes later, it takes
    over (:meth:`retarget`; an any-method route does not, as in Spry, HEAD prefers
    GET): aiohttp cannot remove the HEAD route already on
    the resource, so this object forwards to the new endpoint instead.
    """

    __slots__ = ("target",)

    def __init__(self, target: RouteEndpoint) -> None:
        self.target = target

    async def handle(self, request: web.Request) -> web.StreamResponse:
        return await self.target.handle(request)

    def retarget(self, target: RouteEndpoint) -> None:
        self.target = target

    def __repr__(self) -> str:
        return f"<HeadFallback to {self.target!r}>"


class HeadRoutes:
    """One application's HEAD routing: which path shapes have a HEAD of their own,
    and the :class:`HeadFallback` of each GET route answering HEAD for its path."""

    __slots__ = ("_explicit", "_fallbacks")

    def __init__(self) -> None:
        self._explicit: set[str] = set()
        self._fallbacks: dict[str, tuple[HeadFallback, web.Resource]] = {}

    def register(self, resource: web.Resource, route: Route, endpoint: RouteEndpoint) -> None:
        """Add ``route``'s methods to ``resource``, and HEAD for a GET route whose path
        has no HEAD route (yet: a later one takes over)."""
        shape = path_shape(route.path)
        # Only a HEAD route takes over: for HEAD, Spry prefers GET to an any-method route.
        explicit_head = "HEAD" in route.methods
        replaced = self._fallbacks.pop(shape, None) if explicit_head else None
        if replaced is not None:
            replaced[0].retarget(endpoint)
        for method in route.methods:
            if method == "HEAD" and replaced is not None and replaced[1] is resource:
                continue  # the fallback's route on this resource now forwards here
            resource.add_route(method, endpoint.handle)
        if explicit_head:
            self._explicit.add(shape)
        elif "GET" in route.methods and shape not in self._explicit:
            fallback = HeadFallback(endpoint)
            resource.add_route("HEAD", fallback.handle)
            self._fallbacks[shape] = (fallback, resource)


class NotFoundMiddleware:
    """Offers a 404 under a scope with error handlers to those handlers.

    An aiohttp middleware, installed only once the extension has error
    handlers, so applications without any pay nothing for it.
    """

    __middleware_version__: Final = 1  # a new-style aiohttp middleware

    def __init__(self, hooks: Hooks, settings: WebSocketSettings, *, debug: bool) -> None:
        self._hooks = hooks
        self._settings = settings
        self._debug = debug

    async def __call__(self, request: web.Request, handler: AiohttpHandler) -> web.StreamResponse:
        missing = request.match_info.http_exception
        if missing is None or missing.status != 404:
            return await handler(request)
        handlers = self._hooks.error_handlers_for_request(request.method, request.path)
        if not handlers:
            return await handler(request)
        error = NotFoundError(request.method, request.path)
        event = Event(request, self._settings)
        return await handle_error(error, event, handlers, debug=self._debug)
