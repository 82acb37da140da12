"""Spry's request pipeline: middleware chains, scoped error handlers, and their scopes.

The handshake is an ordinary request, so middleware and error handlers see it
(and the upgrade a route returns, before its session starts). The session is
not: nothing here runs per WebSocket message, and a session's exceptions never
reach an error handler.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import attrs
from aiohttp import web

from .exceptions import HTTPError
from .log import describe_request, logger
from .responses import internal_error_response, to_response

if TYPE_CHECKING:
    from .event import Event

#: ``await next()`` runs the rest of the chain and returns its response.
Next = Callable[[], Awaitable[web.StreamResponse]]
#: ``async def middleware(event, next)``: act before and after ``await next()``,
#: or return (or raise) without calling it.
Middleware = Callable[["Event", Next], Awaitable[Any]]
#: ``def on_error(error, event)`` (sync or async): return a response to handle
#: the error; return ``None`` or raise to pass an error outward.
ErrorHandler = Callable[[Exception, "Event"], Any]

_PARAM = re.compile(r"^\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::(?P<regex>.*))?\}$")


@attrs.frozen
class Scope:
    """A path prefix in aiohttp's syntax (``/admin``, ``/users/{id}``); ``/`` covers all."""

    path: str
    segments: tuple[str, ...] = attrs.field(init=False)

    @segments.default
    def _split(self) -> tuple[str, ...]:
        return tuple(segment for segment in self.path.split("/") if segment)

    @classmethod
    def of(cls, path: str | None) -> Scope:
        """The scope for ``path`` (``None`` = the whole extension).

        Raises:
            ValueError: ``path`` does not start with ``/``.
        """
        if path is None:
            return cls("/")
        if not path.startswith("/"):
            raise ValueError(f"a scope path must start with '/', got {path!r}")
        return cls(path)

    @property
    def depth(self) -> int:
        return len(self.segments)

    def covers_route(self, route_path: str) -> bool:
        """Whether a route declared at ``route_path`` lies in this scope."""
        route_segments = tuple(segment for segment in route_path.split("/") if segment)
        return route_segments[: self.depth] == self.segments

    def covers_request(self, request_path: str) -> bool:
        """Whether a concrete request path lies in this scope (parameters match a segment)."""
        parts = [part for part in request_path.split("/") if part]
        if len(parts) < self.depth:
            return False
        for segment, part in zip(self.segments, parts, strict=False):
            param = _PARAM.match(segment)
            if param is None:
                if segment != part:
                    return False
            elif param["regex"] is not None and not re.fullmatch(param["regex"], part):
                return False
        return True


@attrs.frozen
class Scoped:
    """A middleware or error handler registered for a scope (and, if ``methods``
    is set, for those request methods only), in registration order."""

    scope: Scope
    function: Callable[..., Any]
    order: int
    methods: frozenset[str] | None = None

    def for_methods(
        self,
        route_methods: frozenset[str],
        wrap: Callable[[frozenset[str], Any], Callable[..., Any]],
    ) -> Callable[..., Any] | None:
        """The function as a route serving ``route_methods`` runs it: as is when it
        applies to all of them, ``None`` when to none of them, else ``wrap``-ped to
        check the request's method."""
        if self.methods is None:
            return self.function
        if "*" not in route_methods:
            if route_methods <= self.methods:
                return self.function
            if not route_methods & self.methods:
                return None
        return wrap(self.methods, self.function)


def request_methods(methods: Iterable[str]) -> frozenset[str]:
    """The request methods a method scope covers: a HEAD is a GET without a body
    (RFC 9110 §9.3.2), so GET covers HEAD too.

    Raises:
        ValueError: an empty list or ``"*"`` (write ``None`` for every method).
    """
    checked = frozenset(str(method).upper() for method in methods)
    if not checked or "*" in checked:
        raise ValueError(
            f"methods= takes HTTP methods like ['GET'] (or None for every method), got {methods!r}"
        )
    return checked | {"HEAD"} if "GET" in checked else checked


class MethodMiddleware:
    """A middleware that runs for some request methods only (``_middleware.get.py``)."""

    __slots__ = ("function", "methods")

    def __init__(self, methods: frozenset[str], function: Middleware) -> None:
        self.methods = methods
        self.function = function

    async def __call__(self, event: Event, next: Next) -> Any:
        if event.method in self.methods:
            return await self.function(event, next)
        return await next()

    def __repr__(self) -> str:
        return f"<{'/'.join(sorted(self.methods))} only: {self.function!r}>"


class MethodErrorHandler:
    """An error handler for some request methods only (``_error.get.py``); for the
    others it passes the error outward."""

    __slots__ = ("function", "methods")

    def __init__(self, methods: frozenset[str], function: ErrorHandler) -> None:
        self.methods = methods
        self.function = function

    def __call__(self, error: Exception, event: Event) -> Any:
        if event.method in self.methods:
            return self.function(error, event)
        return None

    def __repr__(self) -> str:
        return f"<{'/'.join(sorted(self.methods))} only: {self.function!r}>"


def innermost_first(handlers: list[Scoped]) -> list[Scoped]:
    """Error handlers in the order they are tried: deeper scopes first, then the
    later registration first within one scope."""
    return sorted(handlers, key=lambda s: (-s.scope.depth, -s.order))


async def run_chain(
    chain: Sequence[Middleware], event: Event, innermost: Next, index: int = 0
) -> web.StreamResponse:
    """Run ``chain[index:]`` around ``innermost``; every step's result becomes a response."""
    if index == len(chain):
        return await innermost()

    def next_step() -> Awaitable[web.StreamResponse]:
        return run_chain(chain, event, innermost, index + 1)

    return to_response(await chain[index](event, next_step))


async def handle_error(
    error: Exception, event: Event, handlers: Sequence[ErrorHandler], *, debug: bool
) -> web.StreamResponse:
    """Offer ``error`` to ``handlers`` (innermost first) and answer with the first response.

    A handler that raises passes its new error outward. When none answers, an
    :class:`HTTPError` becomes its response, an aiohttp ``HTTPException`` is
    re-raised for aiohttp, and anything else is logged and answered with 500.
    """
    for handler in handlers:
        try:
            result = handler(error, event)
            if inspect.isawaitable(result):
                result = await result
            if result is None:
                continue
            response = to_response(result)
        except web.HTTPException:
            raise
        except Exception as raised:
            error = raised
            continue
        logger.debug("%s handled by %s: %s", type(error).__name__, handler, error)
        return response
    if isinstance(error, HTTPError):
        return error.to_response()
    logger.error(
        "Unhandled exception in route handler: %s: %s",
        describe_request(event.request),
        error,
        exc_info=error,
    )
    return internal_error_response(error, debug=debug)


def check_middleware(middleware: Middleware) -> Middleware:
    """Refuse, at registration, a middleware that cannot be awaited.

    Raises:
        TypeError: ``middleware`` is not an ``async def`` taking ``(event, next)``.
    """
    if not inspect.iscoroutinefunction(middleware) and not inspect.iscoroutinefunction(
        getattr(middleware, "__call__", None)  # noqa: B004 - async callable objects
    ):
        raise TypeError(f"middleware {middleware!r} must be an async function taking (event, next)")
    return middleware


def check_error_handler(handler: ErrorHandler) -> ErrorHandler:
    """Refuse, at registration, an error handler that is not callable.

    Raises:
        TypeError: ``handler`` is not callable.
    """
    if not callable(handler):
        raise TypeError(f"error handler {handler!r} must be callable as on_error(error, event)")
    return handler


class Hooks:
    """The middleware and error handlers registered with one extension, with their scopes.

    Routes ask it for their chain once (:meth:`for_route`); the not-found
    middleware asks it for the error handlers covering a request path.
    """

    __slots__ = ("_error_handlers", "_first", "_middleware", "_order")

    def __init__(self) -> None:
        self._middleware: list[Scoped] = []
        self._error_handlers: list[Scoped] = []
        self._order = 0
        self._first = 0

    @property
    def has_error_handlers(self) -> bool:
        return bool(self._error_handlers)

    def add_middleware(
        self, scope: Scope, middleware: Middleware, methods: frozenset[str] | None = None
    ) -> None:
        self._order += 1
        self._middleware.append(Scoped(scope, middleware, self._order, methods))

    def add_error_handler(
        self,
        scope: Scope,
        handler: ErrorHandler,
        methods: frozenset[str] | None = None,
        *,
        first: bool = False,
    ) -> None:
        """Add an error handler; ``first=True`` orders it before every other one of its
        scope, so it is tried after them (``hooks.py``'s ``on_error``)."""
        if first:
            self._first -= 1
            order = self._first
        else:
            self._order += 1
            order = self._order
        self._error_handlers.append(Scoped(scope, handler, order, methods))

    def for_route(
        self,
        path: str,
        methods: frozenset[str],
        own_middleware: tuple[Middleware, ...],
        own_on_error: ErrorHandler | None,
    ) -> tuple[tuple[Middleware, ...], tuple[ErrorHandler, ...]]:
        """The middleware chain (outer first) and error handlers (innermost first) of a
        route serving ``methods`` (``"*"``: any); method-scoped ones that cannot apply
        are left out, and ones that apply to some of its methods check the method."""
        chain = [
            function
            for s in self._middleware
            if s.scope.covers_route(path)
            and (function := s.for_methods(methods, MethodMiddleware)) is not None
        ]
        handlers = [
            function
            for s in innermost_first(
                [s for s in self._error_handlers if s.scope.covers_route(path)]
            )
            if (function := s.for_methods(methods, MethodErrorHandler)) is not None
        ]
        if own_on_error is not None:
            handlers.insert(0, own_on_error)
        return (*chain, *own_middleware), tuple(handlers)

    def error_handlers_for_request(self, method: str, path: str) -> list[ErrorHandler]:
        """The error handlers whose scope covers a concrete request, innermost first."""
        return [
            s.function
            for s in innermost_first(
                [s for s in self._error_handlers if s.scope.covers_request(path)]
            )
            if s.methods is None or method in s.methods
        ]
