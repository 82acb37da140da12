"""WebSockets the Spry way: ``event.ws`` (the handshake side) and ``WebSocket`` (the session).

A route accepts a WebSocket by *returning* ``event.ws.upgrade(session)``; the
route wrapper then completes the handshake on aiohttp's
:class:`~aiohttp.web.WebSocketResponse` and runs ``session(ws)`` with a
:class:`WebSocket`. Messages arrive as frozen attrs classes from ``ws.events``:

    async def session(ws: WebSocket) -> None:
        async for message in ws.events:
            match message:
                case TextDataReceived(text=text):
                    await ws.send_text(f"Echo: {text}")
                case BinaryDataReceived(data=data):
                    await ws.send_bytes(data)
                case CloseReceived(code=code, reason=reason):
                    print("peer closed", code, reason)
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, final

import attrs
from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp.http import HttpVersion11

from .errors import HTTPError
from .pubsub.fanout import FANOUT_KEY, Backlog, Fanout
from .settings import WebSocketOptions, WebSocketSettings, normalize_origin

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .event import Event

logger = logging.getLogger("aiohttp_spry")

#: Close codes by name (aiohttp's enum): ``CloseCode.GOING_AWAY`` is 1001.
CloseCode = WSCloseCode

#: What a route passes to ``event.ws.upgrade()``: runs for the life of the session.
SessionHandler = Callable[["WebSocket"], Awaitable[None]]

# RFC 6455 §7.4: codes an endpoint may put in a close frame it sends.
_SENDABLE_CODES = frozenset({1000, 1001, 1002, 1003, *range(1007, 1015)})
# A close frame without a status code is reported as 1005 (RFC 6455 §7.1.5).
_NO_STATUS_RECEIVED = 1005
_NEVER_ON_THE_WIRE = frozenset({1005, 1006, 1015})
_MAX_REASON_BYTES = 123
# Characters RFC 7230 forbids in a token, so in a subprotocol name.
_NOT_IN_TOKEN = frozenset(' \t"(),/:;<=>?@[\\]{}')


class PeerNotReadingError(ConnectionResetError):
    """A send waited ``send_timeout`` for a peer that does not read; the connection is gone.

    Raised by ``ws.send_*``; the session ends like any lost connection (logged
    once at WARNING, no 1011).
    """


@attrs.frozen
class TextDataReceived:
    """A text message from the peer (fragments already joined, UTF-8 checked)."""

    text: str


@attrs.frozen
class BinaryDataReceived:
    """A binary message from the peer."""

    data: bytes


@attrs.frozen
class CloseReceived:
    """The peer closed the connection; iteration ends after this.

    ``code`` is 1005 when the peer's close frame carried no status code.
    The server has already answered with the same code.
    """

    code: int
    reason: str = ""


WebSocketMessage = TextDataReceived | BinaryDataReceived | CloseReceived

_new = object.__new__
# Module constants: an enum attribute lookup costs ~8x a global on the message path.
_TEXT, _BINARY, _CLOSE, _ERROR = WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CLOSE, WSMsgType.ERROR
_set_text = TextDataReceived.__dict__["text"].__set__
_set_data = BinaryDataReceived.__dict__["data"].__set__


def describe_request(request: web.BaseRequest) -> str:
    """``GET /chat peer=127.0.0.1``: the facts every log line about a request starts with."""
    return f"{request.method} {request.path} peer={request.remote}"


def parse_protocols(header_values: Iterable[str]) -> tuple[str, ...]:
    """Split ``Sec-WebSocket-Protocol`` header values into names, in the client's order."""
    names = (part.strip() for value in header_values for part in value.split(","))
    return tuple(name for name in names if name)


def _check_protocol_name(name: str) -> str:
    if not isinstance(name, str) or not name or any(c in _NOT_IN_TOKEN for c in name):
        raise ValueError(
            f"invalid WebSocket subprotocol {name!r}: expected a non-empty token "
            "without spaces, commas or separators, like 'spry-chat-v1'"
        )
    return name


class EventWebSocket:
    """``event.ws``: everything about the WebSocket handshake of one request.

    Example:
        >>> @spry.route("/chat")
        ... async def chat(event: Event) -> web.StreamResponse:
        ...     if not event.ws.is_upgrade_request:
        ...         return Response.json({"mode": "http"})
        ...     return event.ws.upgrade(session, protocol="spry-chat-v1")
    """

    # Holds only the event, and the event does not hold it: no reference cycle,
    # so a request's objects are freed as soon as it ends, not by the cyclic GC.
    __slots__ = ("_event",)

    def __init__(self, event: Event) -> None:
        self._event = event

    @property
    def is_supported(self) -> bool:
        """Whether this connection can still be upgraded (it is open)."""
        return self._event.request.transport is not None

    @property
    def is_upgrade_request(self) -> bool:
        """Whether the client asked for a WebSocket (``Upgrade: websocket`` and
        ``Connection: upgrade``).

        Only these two headers decide (on HTTP/1.1 or later), so a handshake
        with a missing key or a bad version still counts and gets a 400 from
        :meth:`upgrade` instead of the route's HTTP fallback.
        """
        request = self._event.request
        if request.version < HttpVersion11:
            return False  # RFC 7230 §6.7: an HTTP/1.0 server ignores Upgrade
        headers = request.headers
        if headers.get("Upgrade", "").strip().lower() != "websocket":
            return False
        connection = headers.get("Connection", "").lower()
        return connection == "upgrade" or "upgrade" in [t.strip() for t in connection.split(",")]

    @property
    def requested_protocols(self) -> tuple[str, ...]:
        """The subprotocols the client offered, in its order of preference.

        Read from the first ``Sec-WebSocket-Protocol`` line only, as aiohttp
        does when it selects one, so what is logged is what was negotiated.
        """
        offered = self._event.request.headers.get("Sec-WebSocket-Protocol")
        return parse_protocols((offered,)) if offered else ()

    def upgrade(
        self,
        session: SessionHandler,
        *,
        protocol: str | None = None,
        protocols: Iterable[str] | None = None,
        **websocket: Unpack[WebSocketOptions],
    ) -> UpgradeResponse:
        """Accept the WebSocket; the route must return what this returns.

        ``protocol`` (or ``protocols``, in the server's order of preference)
        names the subprotocols this route speaks. The one used is the first the
        *client* offered that the route speaks (RFC 6455 §4.2.2): a client that
        offered none, or none of these, is accepted without a
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
            ValueError: both ``protocol`` and ``protocols``, a malformed
                protocol name, or an invalid setting.
        """
        if self._event._upgraded:
            raise RuntimeError(
                "event.ws.upgrade() was already called for "
                f"{describe_request(self._event.request)}; call it once and return its result"
            )
        if protocol is not None and protocols is not None:
            raise ValueError("pass either protocol= or protocols=, not both")
        if protocol is not None:
            offered_by_server: tuple[str, ...] = (protocol,)
        else:
            offered_by_server = tuple(protocols) if protocols is not None else ()
        for name in offered_by_server:
            _check_protocol_name(name)

        event = self._event
        request = event.request
        if request.method != "GET":
            self._refuse(f"method {request.method} cannot upgrade, only GET", offered_by_server)
            raise HTTPError(
                405,
                body=f"WebSocket upgrades need GET, not {request.method}.",
                headers={"Allow": "GET"},
            )
        if not self.is_supported:
            self._refuse("the connection is gone", offered_by_server)
            raise HTTPError(501, body="WebSocket is not supported on this connection.")
        if not self.is_upgrade_request:
            # Not a handshake attempt at all (often a browser or curl): INFO, not WARNING.
            logger.info(
                "WebSocket upgrade refused, not a handshake (426): %s", describe_request(request)
            )
            raise HTTPError(
                426,
                body="Upgrade Required",
                headers={"Upgrade": "websocket", "Connection": "Upgrade"},
            )

        version = request.headers.get("Sec-WebSocket-Version", "")
        if version != "13":
            # aiohttp would also accept the hybi drafts 7 and 8; RFC 6455 is 13.
            self._refuse(f"unsupported Sec-WebSocket-Version {version!r}", offered_by_server)
            raise HTTPError(
                400,
                body=f"Unsupported WebSocket version {version!r}; this server speaks 13.",
                headers={"Sec-WebSocket-Version": "13"},
            )
        settings = event.settings.evolve_from(**websocket) if websocket else event.settings
        self._check_origin(settings.allowed_origins)
        self._negotiate(offered_by_server, strict=settings.strict_protocols)
        event._upgraded = True
        return UpgradeResponse(session, event, settings, offered_by_server)

    def _check_origin(self, allowed: tuple[str, ...]) -> None:
        """Refuse a browser page from another origin (cross-site WebSocket hijacking).

        Raises:
            HTTPError: 403 naming the refused origin.
        """
        request = self._event.request
        origin = request.headers.get("Origin")
        if origin is None or "*" in allowed:
            return
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
        if not offered_by_server and "Sec-WebSocket-Protocol" not in self._event.request.headers:
            return  # the common case: nothing to negotiate
        offered_by_client = self.requested_protocols
        if any(name in offered_by_server for name in offered_by_client):
            return
        if not offered_by_server and not offered_by_client:
            return
        request = self._event.request
        if strict and offered_by_server:
            self._refuse("no common subprotocol (strict_protocols)", offered_by_server)
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
                describe_request(request),
                list(offered_by_client),
                list(offered_by_server),
            )
        else:
            logger.debug(
                "WebSocket client offered no subprotocol, accepting without one: %s "
                "server speaks %s",
                describe_request(request),
                list(offered_by_server),
            )

    def _refuse(self, why: str, offered_by_server: tuple[str, ...]) -> None:
        logger.warning(
            "WebSocket handshake refused (%s): %s client offered %s, server speaks %s",
            why,
            describe_request(self._event.request),
            list(self.requested_protocols),
            list(offered_by_server),
        )


@final
class UpgradeResponse(web.WebSocketResponse):
    """What ``event.ws.upgrade()`` returns: an aiohttp ``WebSocketResponse`` not yet
    prepared, carrying the session handler. Return it from the route; the route
    wrapper completes the handshake and runs the session. Not to be subclassed
    (the wrapper recognises it by its exact type).
    """

    # Slots, not instance attributes: extra keys in the instance dict would make
    # every session's aiohttp state dict larger (about 1.5 KiB per session).
    __slots__ = ("event", "offered_protocols", "session", "settings")

    def __init__(
        self,
        session: SessionHandler,
        event: Event,
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
        self.event = event
        self.settings = settings
        self.offered_protocols = protocols


class WebSocket:
    """The session side of an accepted WebSocket, passed to the session handler.

    Example:
        >>> async def session(ws: WebSocket) -> None:
        ...     await ws.send_text("connected")
        ...     async for message in ws.events:
        ...         if isinstance(message, TextDataReceived):
        ...             await ws.send_json({"echo": message.text})
    """

    __slots__ = (
        "_backlog",
        "_done",
        "_high_water",
        "_id",
        "_response",
        "_topics",
        "_transport",
        "event",
    )

    def __init__(self, response: UpgradeResponse) -> None:
        self._response = response
        self.event: Event = response.event
        self._done = False  # ws.events has ended
        transport = response.event.request.transport
        assert transport is not None, "a prepared WebSocket has a transport"
        self._transport = transport
        # Past the transport's high-water mark aiohttp waits for the peer to read.
        self._high_water = transport.get_write_buffer_limits()[1]
        # Pub/sub state, made on first use: most sessions never subscribe.
        self._topics: set[str] | frozenset[str] | None = None
        self._backlog: Backlog | None = None
        self._id: str | None = None

    @property
    def id(self) -> str:
        """A random identifier for this session, unique across processes (16 hex digits)."""
        if self._id is None:
            self._id = secrets.token_hex(8)
        return self._id

    @property
    def protocol(self) -> str | None:
        """The negotiated subprotocol, or ``None`` when none was agreed."""
        return self._response.ws_protocol

    @property
    def closed(self) -> bool:
        """Whether a close frame has been sent or the connection is gone."""
        return self._response.closed

    @property
    def close_code(self) -> int | None:
        """The close code once the session is closing or closed, else ``None``."""
        return self._response.close_code

    @property
    def events(self) -> WebSocket:
        """Messages from the peer: ``async for message in ws.events``.

        Yields :class:`TextDataReceived` and :class:`BinaryDataReceived`; when
        the peer closes, yields :class:`CloseReceived` and stops. It also stops,
        without a ``CloseReceived``, when the peer vanishes, breaks the protocol
        (the server closes with the RFC code, e.g. 1009 for a message over
        ``max_msg_size``, and logs it), or the server closes the session.
        The session object is its own iterator (one object per session, no
        reference cycle), so iterating twice continues where it stopped.
        """
        return self

    def send_text(self, text: str) -> Awaitable[None]:
        """Send a text message: ``await ws.send_text("hi")``.

        Raises:
            ConnectionResetError: the connection is closing or gone.
            PeerNotReadingError: the peer read nothing for ``send_timeout``
                while its send buffer was full; the connection is aborted.
        """
        # Not a coroutine itself, to save one per message: it returns aiohttp's.
        # A UTF-8 character is at most 4 bytes: below the mark, no send waits.
        if self._transport.get_write_buffer_size() + 4 * len(text) < self._high_water:
            return self._response.send_str(text)
        return self._send_to_slow_peer(self._response.send_str(text))

    def send_bytes(self, data: bytes) -> Awaitable[None]:
        """Send a binary message: ``await ws.send_bytes(b"...")``.

        Raises:
            ConnectionResetError: the connection is closing or gone.
            PeerNotReadingError: as for :meth:`send_text`.
        """
        if self._transport.get_write_buffer_size() + len(data) < self._high_water:
            return self._response.send_bytes(data)
        return self._send_to_slow_peer(self._response.send_bytes(data))

    async def _send_to_slow_peer(self, send: Awaitable[object]) -> None:
        """Send while the peer's buffer is full: wait at most ``send_timeout``."""
        timeout = self._response.settings.send_timeout
        try:
            await asyncio.wait_for(send, timeout)
        except asyncio.TimeoutError:
            buffered = self._transport.get_write_buffer_size()
            logger.warning(
                "WebSocket peer is not reading (%d bytes waiting for %ss), closing with 1008 "
                "and aborting the connection: %s",
                buffered,
                timeout,
                self,
            )
            # A peer that does not read would never receive a close frame either.
            self._transport.abort()
            raise PeerNotReadingError(
                f"the peer read nothing for {timeout}s with {buffered} bytes waiting; "
                "the connection was aborted"
            ) from None

    def send_json(self, data: Any, *, dumps: Callable[[Any], str] = json.dumps) -> Awaitable[None]:
        """Send ``data`` serialized as JSON in a text message: ``await ws.send_json({...})``.

        Raises:
            TypeError: ``data`` is not JSON-serializable.
            ConnectionResetError: the connection is closing or gone.
            PeerNotReadingError: as for :meth:`send_text`.
        """
        return self.send_text(dumps(data))

    async def close(self, code: int = CloseCode.OK, reason: str = "") -> None:
        """Start the closing handshake and wait (bounded) for the peer's answer.

        Closing an already closed session does nothing.

        Raises:
            ValueError: ``code`` may not be sent (RFC 6455 §7.4: use 1000–1003,
                1007–1014 or 3000–4999) or ``reason`` is over 123 bytes of UTF-8.
        """
        if code not in _SENDABLE_CODES and not 3000 <= code <= 4999:
            raise ValueError(
                f"close code {code} may not be sent; use 1000-1003, 1007-1014 or 3000-4999"
            )
        message = reason.encode()
        if len(message) > _MAX_REASON_BYTES:
            raise ValueError(
                f"close reason is {len(message)} bytes of UTF-8; the limit is {_MAX_REASON_BYTES}"
            )
        await self._response.close(code=code, message=message)

    @property
    def topics(self) -> frozenset[str]:
        """The topics this session subscribes to."""
        return frozenset(self._topics or ())

    async def subscribe(self, topic: str) -> None:
        """Receive every message published to ``topic``: ``await ws.subscribe("room:1")``.

        Returns once messages from other processes will arrive too (or at once
        while a remote broker is unreachable: the subscription is restored when
        it is back). Subscribing twice does nothing; a session that ends is
        unsubscribed from everything.

        Raises:
            TypeError, ValueError: ``topic`` is not a non-empty ``str``.
            RuntimeError: the session has ended.
        """
        await self._fanout().subscribe(self, topic)

    async def unsubscribe(self, topic: str) -> None:
        """Stop receiving ``topic``. Unsubscribing from a topic not subscribed does nothing."""
        self._fanout().unsubscribe(self, topic)

    async def publish(self, topic: str, data: Any) -> int:
        """Send ``data`` to every subscriber of ``topic`` except this session.

        ``str`` goes out as a text message, ``bytes`` as binary, anything else
        as JSON text, encoded once for all subscribers. Subscribers in other
        processes get it through the broker. A slow subscriber never delays
        the others (see :class:`~aiohttp_spry.pubsub.fanout.Fanout`).

        Example:
            >>> await ws.publish("room:1", {"from": ws.id, "text": "hi"})

        Returns:
            How many sessions of this process it was delivered or queued to.

        Raises:
            TypeError: ``data`` is not JSON-serializable.
        """
        return self._fanout().publish(topic, data, exclude=self)

    def _fanout(self) -> Fanout:
        return self.event.request.app[FANOUT_KEY]

    def __aiter__(self) -> WebSocket:
        return self

    async def __anext__(self) -> WebSocketMessage:
        if self._done:
            raise StopAsyncIteration
        try:
            message = await self._response.receive()
        except asyncio.TimeoutError:
            self._done = True
            await _close_for_receive_timeout(self)
            raise StopAsyncIteration from None
        kind = message.type
        if kind is _TEXT:
            # Built through the slot, skipping attrs' frozen __init__: the same
            # object, a third cheaper, on the per-message path.
            text = _new(TextDataReceived)
            _set_text(text, message.data)
            return text
        if kind is _BINARY:
            binary = _new(BinaryDataReceived)
            _set_data(binary, message.data)
            return binary
        self._done = True
        if kind is _CLOSE:
            return await _answer_peer_close(self, message.data, message.extra)
        if kind is _ERROR:
            _log_protocol_error(self, message.data)
        # CLOSING / CLOSED: the server closed the session, or the peer vanished.
        raise StopAsyncIteration

    def __str__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"WebSocket({describe_request(self.event.request)} protocol={self.protocol} {state})"

    __repr__ = __str__


async def _answer_peer_close(ws: WebSocket, code: int, reason: str | None) -> CloseReceived:
    """Answer the peer's close frame with the same code, as RFC 6455 §5.5.1 suggests.

    Raises:
        StopAsyncIteration: the frame carried a code reserved for local use
            (1005, 1006, 1015; RFC 6455 §7.4.1): closed with 1002 and logged.
    """
    if code in _NEVER_ON_THE_WIRE:
        logger.warning(
            "WebSocket peer sent the reserved close code %s, closing with 1002: %s", code, ws
        )
        await ws._response.close(code=CloseCode.PROTOCOL_ERROR, drain=False)
        raise StopAsyncIteration
    received = CloseReceived(code or _NO_STATUS_RECEIVED, reason or "")
    reply = code if code in _SENDABLE_CODES or 3000 <= code <= 4999 else CloseCode.OK
    await ws._response.close(code=reply, drain=False)
    logger.debug("WebSocket peer closed with %s %r: %s", received.code, received.reason, ws)
    return received


async def _close_for_receive_timeout(ws: WebSocket) -> None:
    timeout = ws._response.settings.receive_timeout
    logger.info(
        "WebSocket receive timeout (%ss without a message), closing with 1008: %s", timeout, ws
    )
    await ws._response.close(code=CloseCode.POLICY_VIOLATION, message=b"receive timeout")


def _log_protocol_error(ws: WebSocket, error: object) -> None:
    # aiohttp's WebSocketError carries the code it closed with; ws.close_code may
    # already say 1006 when the peer did not answer that close cleanly.
    code = getattr(error, "code", None) or ws.close_code
    try:
        name = CloseCode(code or 0).name
    except ValueError:
        name = "unknown"
    logger.warning(
        "WebSocket closed with %s (%s) after a protocol error or lost peer: %s: %s",
        code,
        name,
        ws,
        error,
    )


__all__ = [
    "BinaryDataReceived",
    "CloseCode",
    "CloseReceived",
    "EventWebSocket",
    "PeerNotReadingError",
    "SessionHandler",
    "TextDataReceived",
    "UpgradeResponse",
    "WebSocket",
    "WebSocketMessage",
    "describe_request",
]
