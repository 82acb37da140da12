"""The handshake side of a WebSocket: ``event.ws``, and the ``UpgradeResponse`` a route returns.

A route accepts a WebSocket by *returning* ``event.ws.upgrade(session)``; the
route's endpoint then completes the handshake on aiohttp's
:class:`~aiohttp.web.WebSocketResponse` and runs ``session(ws)``
(:mod:`.session`). Everything here runs before the 101 is sent, so every
refusal is an :class:`~aiohttp_spry.HTTPError` that route error handlers can
still shape.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from inspect import CO_COROUTINE
from types import FunctionType
from typing import TYPE_CHECKING, Final, NoReturn, final

from aiohttp import web

from ..exceptions import HTTPError
from ..log import describe_request, logger
from ..settings import WebSocketOptions, WebSocketSettings, normalize_origin
from .counters import SESSION_COUNTERS_KEY
from .rfc6455 import check_protocol_name, is_upgrade_request, parse_protocols

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .session import WebSocket

#: What a route passes to ``event.ws.upgrade()``: ``async def session(ws)``, run
#: for the life of the session.
SessionHandler = Callable[["WebSocket"], Awaitable[None]]

_VERSION: Final = "13"  # RFC 6455; aiohttp would also take the hybi drafts 7 and 8


class EventWebSocket:
    """``event.ws``: everything about the WebSocket handshake of one request.

    Example::

        @spry.route("/chat")
        async def chat(event: Event) -> web.StreamResponse:
            if not event.ws.is_upgrade_request:
                return Response.json({"mode": "http"})
            return event.ws.upgrade(session, protocol="spry-chat-v1")
    """

    # The request and the route's settings, not the event: the event caches
    # this object, and a pointer back would make a reference cycle.
    __slots__ = ("_request", "_settings", "_upgraded")

    def __init__(self, request: web.Request, settings: WebSocketSettings) -> None:
        self._request = request
        self._settings = settings
        self._upgraded = False

    @property
    def is_supported(self) -> bool:
        """Whether this connection can still be upgraded (it is open)."""
        return self._request.transport is not None

    @property
    def is_upgrade_request(self) -> bool:
        """Whether the client asked for a WebSocket (``Upgrade: websocket`` and
        ``Connection: upgrade``).

        Only these two headers decide (on HTTP/1.1 or later), so a handshake
        with a missing key or a bad version still counts and gets a 400 from
        :meth:`upgrade` instead of the route's HTTP fallback.
        """
        return is_upgrade_request(self._request.version, self._request.headers)

    @property
    def requested_protocols(self) -> tuple[str, ...]:
        """The subprotocols the client offered, in its order of preference.

        Read from the first ``Sec-WebSocket-Protocol`` line only, as aiohttp
        does when it selects one, so what is logged is what was negotiated.
        """
        offered = self._request.headers.get("Sec-WebSocket-Protocol")
        return parse_protocols((offered,)) if offered else ()

    @property
    def upgraded(self) -> bool:
        """Whether :meth:`upgrade` accepted this request (the route must return its result)."""
        return self._upgraded

    def upgrade(
        self,
        session: SessionHandler,
        *,
        protocol: str | None = None,
        protocols: Iterable[str] | None = None,
        **websocket: Unpack[WebSocketOptions],
    ) -> UpgradeResponse:
        """Accept the WebSocket; the route must return what this returns.

        ``session`` is an ``async def session(ws)`` run for the life of the
        connection. ``protocol`` (or ``protocols``, in the server's order of
        preference) names the subprotocols this route speaks. The one used is
        the first the *client* offered that the route speaks (RFC 6455 §4.2.2):
        a client that offered none, or none of these, is accepted without a
        ``Sec-WebSocket-Protocol`` header (and a WARNING names both lists),
        unless ``strict_protocols`` asks to refuse it with 400. The rest of the
        keywords override the route's :class:`WebSocketSettings`.
        A browser page from another origin than the server's own (or one of
        ``allowed_origins``) is refused with 403.

        Checks run in Spry's order, each raising :class:`HTTPError`, which the
        route answers with unless it catches it: a method other than GET → 405
        with ``Allow: GET``; a connection that cannot upgrade → 501; no
        WebSocket handshake → 426 with ``Upgrade: websocket``; a version other
        than 13 → 400 with ``Sec-WebSocket-Version: 13``. A malformed key gets
        aiohttp's 400 once the route returns.

        Raises:
            HTTPError: 405, 501, 426, 403 for a foreign origin, or 400 in
                strict mode, as above.
            RuntimeError: ``upgrade()`` was already called for this request.
            TypeError: ``session`` is not an async function, or a protocol
                name is not a ``str``.
            ValueError: both ``protocol`` and ``protocols``, a malformed
                protocol name, or an invalid setting.
        """
        request = self._request
        if self._upgraded:
            raise RuntimeError(
                f"event.ws.upgrade() was already called for {describe_request(request)}; "
                "call it once and return its result"
            )
        # The common case (an ``async def``) in one flag test, not inspect's walk.
        if type(session) is not FunctionType or not session.__code__.co_flags & CO_COROUTINE:
            _check_session_handler(session)
        if protocol is None and protocols is None:
            offered_by_server: tuple[str, ...] = ()
        else:
            offered_by_server = _server_protocols(protocol, protocols)
        settings = self._settings.evolve_from(**websocket) if websocket else self._settings
        headers = request.headers
        try:
            # Every check of a handshake that passes them all, in one test (this
            # runs once per session); _refuse() finds the one that failed.
            if (
                request.method != "GET"
                or request.transport is None
                or not is_upgrade_request(request.version, headers)
                or headers.get("Sec-WebSocket-Version") != _VERSION
            ):
                self._refuse(offered_by_server)
            origin = headers.get("Origin")
            if origin is not None and "*" not in settings.allowed_origins:
                self._check_origin(origin, settings.allowed_origins)
            if offered_by_server or "Sec-WebSocket-Protocol" in headers:
                self._negotiate(offered_by_server, strict=settings.strict_protocols)
        except HTTPError as refusal:
            # Only a refusal pays for the lookup: metrics off, no counters on the app.
            counters = request.app.get(SESSION_COUNTERS_KEY)
            if counters is not None:
                counters.refuse(refusal.status)
            raise
        self._upgraded = True
        return UpgradeResponse(session, request, settings, offered_by_server)

    def _refuse(self, offered_by_server: tuple[str, ...]) -> NoReturn:
        """Refuse a request that is no acceptable handshake, in Spry's order of checks.

        Raises:
            HTTPError: 405, 501, 426 or 400, whichever check fails first.
        """
        request = self._request
        if request.method != "GET":
            why = f"method {request.method} cannot upgrade, only GET"
            log_refusal(why, request, offered_by_server)
            raise HTTPError(
                405,
                body=f"WebSocket upgrades need GET, not {request.method}.",
                headers={"Allow": "GET"},
            )
        if not self.is_supported:
            log_refusal("the connection is gone", request, offered_by_server)
            raise HTTPError(501, body="WebSocket is not supported on this connection.")
        if not self.is_upgrade_request:
            # Not a handshake attempt at all (often a browser or curl): INFO, not WARNING.
            logger.info(
                "WebSocket upgrade refused, not a handshake (426): %s",
                describe_request(request),
            )
            raise HTTPError(
                426,
                body="Upgrade Required",
                headers={"Upgrade": "websocket", "Connection": "Upgrade"},
            )
        version = request.headers.get("Sec-WebSocket-Version", "")
        log_refusal(f"unsupported Sec-WebSocket-Version {version!r}", request, offered_by_server)
        raise HTTPError(
            400,
            body=f"Unsupported WebSocket version {version!r}; this server speaks 13.",
            headers={"Sec-WebSocket-Version": _VERSION},
        )

    def _check_origin(self, origin: str, allowed: tuple[str, ...]) -> None:
        """Refuse a browser page from another origin (cross-site WebSocket hijacking).

        Raises:
            HTTPError: 403 naming the refused origin.
        """
        request = self._request
        try:
            normalized = normalize_origin(origin)
        except ValueError:
            normalized = origin  # "null" (sandboxed pages, file://) or garbage: never allowed
        # Same origin means the page's host[:port] is the one the request was sent
        # to; the scheme is left out so a TLS-terminating proxy does not break it.
        if normalized.partition("://")[2] == request.host.lower() or normalized in allowed:
            return
        logger.warning(
            "WebSocket handshake refused (origin %r is not %s%s): %s",
            origin,
            request.host,
            f" nor one of {list(allowed)}" if allowed else "",
            describe_request(request),
        )
        raise HTTPError(
            403,
            body=f"WebSocket connections from origin {origin!r} are not allowed.",
        )

    def _negotiate(self, offered_by_server: tuple[str, ...], *, strict: bool) -> None:
        """Log (or refuse, when strict) a handshake that will agree on no subprotocol.

        aiohttp makes the actual choice from the same lists; this only decides
        whether the outcome is worth a warning or a refusal.
        """
        offered_by_client = self.requested_protocols
        if any(name in offered_by_server for name in offered_by_client):
            return
        if not offered_by_server and not offered_by_client:
            return
        if strict and offered_by_server:
            why = "no common subprotocol (strict_protocols)"
            log_refusal(why, self._request, offered_by_server)
            raise HTTPError(
                400,
                body={
                    "error": "no common WebSocket subprotocol",
                    "supported_protocols": list(offered_by_server),
                    "requested_protocols": list(offered_by_client),
                },
            )
        if offered_by_client:
            logger.warning(
                "WebSocket subprotocol mismatch, accepting without one: %s "
                "client offered %s, server speaks %s",
                describe_request(self._request),
                list(offered_by_client),
                list(offered_by_server),
            )
        else:
            logger.debug(
                "WebSocket client offered no subprotocol, accepting without one: %s "
                "server speaks %s",
                describe_request(self._request),
                list(offered_by_server),
            )


def log_refusal(why: str, request: web.BaseRequest, offered_by_server: Iterable[str]) -> None:
    """The WARNING for a refused handshake: why, the request, and both protocol lists."""
    offered = request.headers.get("Sec-WebSocket-Protocol")
    logger.warning(
        "WebSocket handshake refused (%s): %s client offered %s, server speaks %s",
        why,
        describe_request(request),
        list(parse_protocols((offered,)) if offered else ()),
        list(offered_by_server),
    )


def _server_protocols(protocol: str | None, protocols: Iterable[str] | None) -> tuple[str, ...]:
    """The subprotocols a route speaks, from ``upgrade()``'s ``protocol=`` or ``protocols=``.

    Raises:
        TypeError, ValueError: as :meth:`EventWebSocket.upgrade` says.
    """
    if protocol is not None and protocols is not None:
        raise ValueError("pass either protocol= or protocols=, not both")
    if protocol is not None:
        return (check_protocol_name(protocol),)
    assert protocols is not None
    if isinstance(protocols, str):
        raise TypeError(
            f"protocols= takes a list of names, got the str {protocols!r}; "
            "for one name write protocol=..."
        )
    return tuple(check_protocol_name(name) for name in protocols)


def _check_session_handler(session: object) -> None:
    if inspect.iscoroutinefunction(session) or inspect.iscoroutinefunction(
        getattr(session, "__call__", None)  # noqa: B004 - async callable objects
    ):
        return
    name = getattr(session, "__qualname__", None) or repr(session)
    short = getattr(session, "__name__", "session")
    raise TypeError(
        f"event.ws.upgrade() needs an async session handler, got {name} "
        f"({type(session).__name__}); write it as 'async def {short}(ws: WebSocket) -> None'"
    )


@final
class UpgradeResponse(web.WebSocketResponse):
    """What ``event.ws.upgrade()`` returns: an aiohttp ``WebSocketResponse`` not yet
    prepared, carrying the session handler. Return it from the route; the route's
    endpoint completes the handshake and runs the session. Not to be subclassed
    (the endpoint recognises it by its exact type).

    Attributes:
        session: the session handler.
        request: the request it accepts.
        settings: the WebSocket settings in force for this session.
        offered_protocols: the subprotocols the route speaks, in its order.
    """

    # Slots, not instance attributes: extra keys in the instance dict would make
    # every session's aiohttp state dict larger (about 1.5 KiB per session).
    __slots__ = ("offered_protocols", "request", "session", "settings")

    def __init__(
        self,
        session: SessionHandler,
        request: web.Request,
        settings: WebSocketSettings,
        protocols: tuple[str, ...],
    ) -> None:
        super().__init__(
            protocols=protocols,
            heartbeat=settings.heartbeat,
            # aiohttp refuses a message of exactly its limit; ours is inclusive.
            max_msg_size=settings.max_msg_size + 1 if settings.max_msg_size else 0,
            compress=settings.compress,
            receive_timeout=settings.receive_timeout,
            # The session answers a peer's close itself, echoing its code.
            autoclose=False,
        )
        self.session = session
        self.request = request
        self.settings = settings
        self.offered_protocols = protocols
