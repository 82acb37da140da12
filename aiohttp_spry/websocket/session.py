"""The session side of a WebSocket: ``WebSocket``, running a session, and the registry.

Once a route returns ``event.ws.upgrade(session)``, :meth:`SessionRegistry.start`
finishes the handshake and opens a :class:`WebSocket`, the route's endpoint runs
``session(ws)``, and :meth:`SessionRegistry.finish` owns the close;
:class:`SessionRegistry` knows every open session of an application and closes
them with 1001 at shutdown. Messages arrive as the value classes of
:mod:`.messages`::

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
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal, NoReturn, overload

from aiohttp import WSMessage, WSMsgType, web

from ..exceptions import HTTPError, PeerNotReadingError
from ..log import describe_request, logger
from ..pubsub.fanout import FANOUT_KEY, Fanout
from ..pubsub.positions import Position, SubscribeResult, parse_position
from ..pubsub.presence import PresenceFormat, default_presence_format
from .counters import SessionCounters
from .handshake import UpgradeResponse, log_refusal
from .masking import prepare_checked
from .messages import BinaryDataReceived, CloseReceived, TextDataReceived, WebSocketMessage
from .rfc6455 import NEVER_ON_THE_WIRE, NO_STATUS_RECEIVED, CloseCode, close_reason, reply_code

if TYPE_CHECKING:
    from ..event import Event

# Module constants: an enum attribute lookup costs ~8x a global on the message path.
_TEXT, _BINARY, _CLOSE, _ERROR = WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CLOSE, WSMsgType.ERROR
# A close frame is at most 2 + 125 bytes; below the mark minus this, close() never waits.
_CLOSE_FRAME_MAX: Final = 127


class WebSocket:
    """The session side of an accepted WebSocket, passed to the session handler.

    Example::

        async def session(ws: WebSocket) -> None:
            await ws.send_text("connected")
            async for message in ws.events:
                if isinstance(message, TextDataReceived):
                    await ws.send_json({"echo": message.text})

    Attributes:
        event: the handshake's :class:`~aiohttp_spry.Event`.
    """

    __slots__ = ("_done", "_high_water", "_id", "_registry", "_response", "_transport", "event")

    def __init__(
        self,
        response: UpgradeResponse,
        event: Event,
        registry: SessionRegistry,
        transport: asyncio.Transport,
    ) -> None:
        self._response = response
        self.event = event
        self._registry = registry
        self._done = False  # ws.events has ended
        self._transport = transport
        # Past the transport's high-water mark aiohttp waits for the peer to read.
        self._high_water = transport.get_write_buffer_limits()[1]
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
    def ended(self) -> bool:
        """Whether the session handler has returned (the session is over for good)."""
        return self not in self._registry

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

    # -- sending -------------------------------------------------------------------

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
        return self._wait_for_peer(self._response.send_str(text))

    def send_bytes(self, data: bytes) -> Awaitable[None]:
        """Send a binary message: ``await ws.send_bytes(b"...")``.

        Raises:
            ConnectionResetError: the connection is closing or gone.
            PeerNotReadingError: as for :meth:`send_text`.
        """
        if self._transport.get_write_buffer_size() + len(data) < self._high_water:
            return self._response.send_bytes(data)
        return self._wait_for_peer(self._response.send_bytes(data))

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

        Closing an already closed session does nothing. A peer that does not
        read gets ``send_timeout`` to take the close frame, then the connection
        is aborted.

        Raises:
            TypeError: ``code`` is not an ``int`` or ``reason`` not a ``str``.
            ValueError: ``code`` may not be sent (RFC 6455 §7.4: use 1000–1003,
                1007–1014 or 3000–4999) or ``reason`` is over 123 bytes of UTF-8.
        """
        message = close_reason(code, reason)
        close = self._response.close(code=code, message=message)
        if self._transport.get_write_buffer_size() + _CLOSE_FRAME_MAX < self._high_water:
            await close
        else:
            await self._wait_for_peer(close)

    async def _wait_for_peer(self, send: Awaitable[object]) -> None:
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

    # -- topics (pub/sub, :mod:`aiohttp_spry.pubsub`) --------------------------------

    @property
    def topics(self) -> frozenset[str]:
        """The topics this session subscribes to."""
        return self._fanout().topics_of(self)

    async def subscribe(
        self,
        topic: str,
        *,
        since: Position | str | None = None,
        hold: bool = False,
        presence: Mapping[str, Any] | None = None,
        presence_events: PresenceFormat | bool = False,
    ) -> SubscribeResult:
        """Receive every message published to ``topic``: ``await ws.subscribe("room:1")``.

        Returns once messages from other processes will arrive too (or at once
        while a remote broker is unreachable: the subscription is restored when
        it is back). Subscribing twice does nothing; a session that ends is
        unsubscribed from everything.

        For a topic with history (``spry.history(prefix, ...)``), ``since`` (a
        :class:`Position` or its ``"EPOCH:OFFSET"`` string) replays every
        message after it first, in order, exactly once, then live ones; the
        result says whether that worked (``recovered``) and the position the
        session joined at. With ``hold=True`` nothing is sent until
        :meth:`resume` (send a first frame of your own in between).
        ``presence`` makes the session present in the topic with that info
        (``spry.presence(app, topic)`` lists it, in every process);
        ``presence_events`` sends it the topic's join and leave events, as
        frames built by that function from a :class:`PresenceEvent` (``True``:
        ``{"type": "join"|"leave", "topic", "member": {"id", **info}}``).

        Example::

            result = await ws.subscribe("room:1", since=request_since, presence={"name": "ann"})
            if result.recovered is False:
                await ws.send_json({"notice": "some messages are gone"})

        Raises:
            TypeError, ValueError: ``topic`` is not a non-empty ``str``; a
                malformed ``since``; ``since`` or ``hold`` for a topic without
                history; ``presence`` not a small JSON dict.
            RuntimeError: the session has ended.
        """
        if self.ended:
            raise RuntimeError(f"{self}: the session has ended; it cannot subscribe to {topic!r}")
        position = parse_position(since) if isinstance(since, str) else since
        events: PresenceFormat | None
        if presence_events is True:
            events = default_presence_format
        elif presence_events is False or presence_events is None:
            events = None
        elif callable(presence_events):
            events = presence_events
        else:
            raise TypeError(
                "presence_events takes True or a function of a PresenceEvent, "
                f"got {presence_events!r}"
            )
        return await self._fanout().subscribe(
            self, topic, since=position, hold=hold, presence=presence, presence_events=events
        )

    def resume(self, topic: str) -> int:
        """Start delivery on a subscription made with ``hold=True``: the replay, then
        the live messages that came meanwhile (each once), then live ones.

        Returns:
            How many frames were sent or queued (0 when nothing was held).
        """
        return self._fanout().resume(self, topic)

    async def unsubscribe(self, topic: str) -> None:
        """Stop receiving ``topic``. Unsubscribing from a topic not subscribed does nothing."""
        self._fanout().unsubscribe(self, topic)

    @overload
    async def publish(self, topic: str, data: Any, *, ack: Literal[False] = False) -> int: ...

    @overload
    async def publish(self, topic: str, data: Any, *, ack: Literal[True]) -> Position: ...

    async def publish(self, topic: str, data: Any, *, ack: bool = False) -> int | Position:
        """Send ``data`` to every subscriber of ``topic`` except this session.

        ``str`` goes out as a text message, ``bytes`` as binary, anything else
        as JSON text, encoded once for all subscribers. Subscribers in other
        processes get it through the broker. A slow subscriber never delays
        the others (see :class:`~aiohttp_spry.pubsub.fanout.Fanout`). On a
        topic with history each subscriber gets the message with its position
        (a ``dict`` gains ``"epoch"`` and ``"offset"``; see
        :mod:`~aiohttp_spry.pubsub.envelope`); ``ack=True`` waits until the
        broker has given it one and returns it.

        Example::

            await ws.publish("room:1", {"from": ws.id, "text": "hi"})
            position = await ws.publish("room:1", {"text": "hi"}, ack=True)

        Returns:
            How many sessions of this process it was delivered or queued to
            (0 for a topic with history on Redis: it is delivered once Redis
            has numbered it); with ``ack=True``, its :class:`Position`.

        Raises:
            TypeError: ``data`` is not JSON-serializable (or bytes, on a topic
                with history).
            ValueError: ``ack=True`` on a topic without history.
        """
        if ack:
            return await self._fanout().publish_positioned(topic, data, exclude=self)
        return self._fanout().publish(topic, data, exclude=self)

    def _fanout(self) -> Fanout:
        return self.event.request.app[FANOUT_KEY]

    # -- receiving -----------------------------------------------------------------

    def __aiter__(self) -> WebSocket:
        return self

    async def __anext__(self) -> WebSocketMessage:
        # MeteredWebSocket.__anext__ is this plus one count per message: keep them
        # in step (test_metrics checks that they differ by the counting lines only).
        if self._done:
            raise StopAsyncIteration
        try:
            message = await self._response.receive()
        except asyncio.TimeoutError:
            return await self._receive_timed_out()
        kind = message.type
        if kind is _TEXT:
            return TextDataReceived(message.data)
        if kind is _BINARY:
            return BinaryDataReceived(message.data)
        return await self._last_message(kind, message)

    async def _receive_timed_out(self) -> WebSocketMessage:
        """No message for ``receive_timeout``: close with 1008 and end the iteration.

        Raises:
            StopAsyncIteration: always.
        """
        self._done = True
        await self._close_for_receive_timeout()
        raise StopAsyncIteration from None

    async def _last_message(self, kind: WSMsgType, message: WSMessage) -> WebSocketMessage:
        """What ends ``ws.events``: the peer's close frame, an error, or the end.

        The peer's close frame is answered with the same code, as RFC 6455
        §5.5.1 suggests (1000 for a code that may not be sent), and yielded.

        Raises:
            StopAsyncIteration: unless the peer sent a close frame to yield; a
                code reserved for local use (1005, 1006, 1015; §7.4.1) is
                closed with 1002 and logged.
        """
        self._done = True
        if kind is _CLOSE:
            code: int = message.data
            if code not in NEVER_ON_THE_WIRE:
                received = CloseReceived(code or NO_STATUS_RECEIVED, message.extra or "")
                await self._response.close(code=reply_code(code), drain=False)
                return received
            logger.warning(
                "WebSocket peer sent the reserved close code %s, closing with 1002: %s", code, self
            )
            await self._response.close(code=CloseCode.PROTOCOL_ERROR, drain=False)
        elif kind is _ERROR:
            self._log_protocol_error(message.data)
        # CLOSING / CLOSED: the server closed the session, or the peer vanished.
        raise StopAsyncIteration

    async def _close_for_receive_timeout(self) -> None:
        logger.info(
            "WebSocket receive timeout (%ss without a message), closing with 1008: %s",
            self._response.settings.receive_timeout,
            self,
        )
        await self._response.close(code=CloseCode.POLICY_VIOLATION, message=b"receive timeout")

    def _log_protocol_error(self, error: object) -> None:
        # aiohttp's WebSocketError carries the code it closed with; close_code may
        # already say 1006 when the peer did not answer that close cleanly.
        code = getattr(error, "code", None) or self.close_code
        try:
            name = CloseCode(code or 0).name
        except ValueError:
            name = "unknown"
        logger.warning(
            "WebSocket closed with %s (%s) after a protocol error or lost peer: %s: %s",
            code,
            name,
            self,
            error,
        )

    def __str__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"WebSocket({describe_request(self.event.request)} protocol={self.protocol} {state})"

    __repr__ = __str__


class MeteredWebSocket(WebSocket):
    """A :class:`WebSocket` that counts its messages: the one sessions get with metrics on.

    A subclass rather than a flag, so that without metrics no message pays
    even a test: the registry picks the class once per session.
    """

    __slots__ = ("_counters",)

    def __init__(
        self,
        response: UpgradeResponse,
        event: Event,
        registry: SessionRegistry,
        transport: asyncio.Transport,
        counters: SessionCounters,
    ) -> None:
        super().__init__(response, event, registry, transport)
        self._counters = counters

    def send_text(self, text: str) -> Awaitable[None]:
        self._counters.sent_text += 1
        return WebSocket.send_text(self, text)

    def send_bytes(self, data: bytes) -> Awaitable[None]:
        self._counters.sent_binary += 1
        return WebSocket.send_bytes(self, data)

    async def __anext__(self) -> WebSocketMessage:
        # WebSocket.__anext__ with the counts inline: wrapping it would cost a
        # coroutine per message (~0.3 us, 2% of an echo); see the note there.
        if self._done:
            raise StopAsyncIteration
        try:
            message = await self._response.receive()
        except asyncio.TimeoutError:
            return await self._receive_timed_out()
        kind = message.type
        if kind is _TEXT:
            self._counters.received_text += 1
            return TextDataReceived(message.data)
        if kind is _BINARY:
            self._counters.received_binary += 1
            return BinaryDataReceived(message.data)
        return await self._last_message(kind, message)


class SessionRegistry:
    """The open WebSocket sessions of one application: admission, membership, shutdown.

    Attributes:
        max_sessions: the most sessions open at once (``None``: no cap).
    """

    __slots__ = ("_closing", "_counters", "_fanout", "_sessions", "max_sessions")

    def __init__(self, fanout: Fanout, max_sessions: int | None = None) -> None:
        self._sessions: set[WebSocket] = set()
        self._closing = False
        self._fanout = fanout
        self._counters: SessionCounters | None = None
        self.max_sessions = max_sessions

    def __contains__(self, ws: object) -> bool:
        return ws in self._sessions

    def __len__(self) -> int:
        return len(self._sessions)

    @property
    def sessions(self) -> tuple[WebSocket, ...]:
        """The open sessions, as a snapshot."""
        return tuple(self._sessions)

    @property
    def counters(self) -> SessionCounters | None:
        """The counters metrics read, or ``None`` while metrics are off."""
        return self._counters

    def count_into(self, counters: SessionCounters) -> None:
        """Count handshakes, closes and messages of the sessions opened from now on."""
        self._counters = counters

    @property
    def closing(self) -> bool:
        """Whether the application is shutting down (new sessions are refused)."""
        return self._closing

    def _refuse_admission(self, request: web.BaseRequest) -> NoReturn:
        """Refuse a new session: shutting down, or at ``max_sessions``.

        Raises:
            HTTPError: 503, with ``Retry-After`` at the cap.
        """
        if self._closing:
            logger.warning(
                "WebSocket handshake refused (shutting down): %s", describe_request(request)
            )
            raise HTTPError(503, body="Server is shutting down.")
        logger.warning(
            "WebSocket handshake refused (%d sessions open, max_sessions=%s): %s",
            len(self._sessions),
            self.max_sessions,
            describe_request(request),
        )
        raise HTTPError(
            503,
            body="Too many WebSocket sessions; try again later.",
            headers={"Retry-After": "1"},
        )

    def end(self, ws: WebSocket) -> None:
        """Forget a finished session: membership, and every topic it subscribed to."""
        self._sessions.discard(ws)
        self._fanout.drop(ws)
        if self._counters is not None:
            self._counters.close(ws.close_code)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("WebSocket session ended with %s: %s", ws.close_code, ws)

    def refuse(self, status: int) -> None:
        """Count a handshake refused after the route returned (503, aiohttp's 400)."""
        if self._counters is not None:
            self._counters.refuse(status)

    async def close_all(self, timeout: float) -> None:
        """Refuse new sessions and close every open one with 1001, waiting at most ``timeout``.

        aiohttp closes no WebSocket on its own, and under ``adev runserver``
        handlers get only 0.1 s after ``on_shutdown``, so the close handshake has
        to happen here. Sessions still closing after ``timeout`` are dropped.
        """
        self._closing = True
        sessions = [ws for ws in self._sessions if not ws.closed]
        if not sessions:
            return
        logger.info("Closing %d WebSocket session(s) with 1001 for shutdown", len(sessions))
        closes = [
            asyncio.ensure_future(ws.close(CloseCode.GOING_AWAY, "server shutting down"))
            for ws in sessions
        ]
        _, pending = await asyncio.wait(closes, timeout=timeout)
        if pending:
            logger.warning(
                "%d WebSocket session(s) did not finish closing within %ss; dropping them",
                len(pending),
                timeout,
            )
            for task in pending:
                task.cancel()
            await asyncio.wait(pending)

    async def start(
        self, response: UpgradeResponse, event: Event
    ) -> WebSocket | web.StreamResponse:
        """Finish the handshake: the session's :class:`WebSocket`, registered as open,
        or the response for a client that left before the 101.

        The route's endpoint then runs ``response.session(ws)``; when it raises
        or returns with the session open, it calls :meth:`finish`, else (closed,
        or cancelled) :meth:`end`. (The handler runs in the endpoint's
        coroutine: one of its own here would hold about 300 bytes more for as
        long as the session is open.)

        Raises:
            HTTPError: 503 while shutting down or at ``max_sessions``, 400 for a
                handshake aiohttp refuses; nothing has been sent, so route
                error handlers can still shape it.
            RuntimeError: the upgrade was made for another request.
        """
        request = event.request
        if response.request is not request:
            raise RuntimeError(
                f"{describe_request(request)}: the route returned an upgrade made for "
                "another request; return event.ws.upgrade() of this event"
            )
        # The checks of the common case written out: this runs once per session.
        if self._closing or (
            self.max_sessions is not None and len(self._sessions) >= self.max_sessions
        ):
            self.refuse(503)
            self._refuse_admission(request)
        transport = request.transport
        if transport is None:  # the client left after the route returned
            return _client_left(request)
        try:
            await prepare_checked(request, response, transport)
        except (web.HTTPException, ValueError) as refused:
            # aiohttp's own handshake checks: missing or bad key (a key with
            # non-ASCII characters makes it raise ValueError instead of its 400).
            reason = refused.text if isinstance(refused, web.HTTPException) else "Handshake error"
            log_refusal(str(reason), request, response.offered_protocols)
            self.refuse(400)
            raise HTTPError(400, body=reason) from None
        except ConnectionResetError:
            # The client left before the 101 went out: nobody to answer. aiohttp
            # notices the closed connection and sends nothing for this response.
            return _client_left(request)
        counters = self._counters
        if counters is None:
            ws = WebSocket(response, event, self, transport)
        else:
            counters.accepted += 1
            ws = MeteredWebSocket(response, event, self, transport, counters)
        self._sessions.add(ws)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("WebSocket session opened: %s", ws)
        return ws

    async def finish(self, ws: WebSocket, error: Exception | None = None) -> None:
        """The session handler returned, or raised ``error``: close the session (1000 if
        the handler left it open; 1011 for an error, which is logged) and forget it.

        A send to a peer that had already left is no error; neither is
        :class:`PeerNotReadingError` (logged where it happened).
        """
        try:
            if error is not None:
                await _fail(ws, error)
            elif not ws.closed:
                await ws.close()
        finally:
            self.end(ws)


def _client_left(request: web.BaseRequest) -> web.Response:
    """The response for a client that left before the 101: aiohttp sends nothing of it."""
    logger.debug("WebSocket peer left during the handshake: %s", describe_request(request))
    return web.Response(status=499, reason="Client Closed Request")


#: The application's live WebSocket sessions.
SESSIONS_KEY: Final = web.AppKey("aiohttp_spry.sessions", SessionRegistry)


async def _fail(ws: WebSocket, exc: Exception) -> None:
    if isinstance(exc, PeerNotReadingError):
        return  # logged where it happened; the connection is already aborted
    transport = ws.event.request.transport
    gone = ws.closed or transport is None or transport.is_closing()
    if gone and isinstance(exc, ConnectionResetError):
        # The peer left or the server closed the session while the handler
        # was still sending: an ordinary end, not a server error.
        logger.debug("WebSocket send after close in session: %s: %s", ws, exc)
        return
    logger.error(
        "Unhandled exception in WebSocket session, closing with 1011: %s", ws, exc_info=exc
    )
    if not ws.closed:
        await ws.close(CloseCode.INTERNAL_ERROR, "internal error")
