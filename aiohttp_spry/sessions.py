"""Running WebSocket sessions: the handshake's last step, the session's life, and shutdown."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Final

from aiohttp import web

from .errors import HTTPError
from .masking import require_masked_frames
from .pubsub.fanout import ENDED, FANOUT_KEY
from .websocket import (
    CloseCode,
    PeerNotReadingError,
    UpgradeResponse,
    WebSocket,
    describe_request,
)

if TYPE_CHECKING:
    from .event import Event

logger = logging.getLogger("aiohttp_spry")


class SessionRegistry:
    """The open WebSocket sessions of one application."""

    __slots__ = ("closing", "max_sessions", "sessions")

    def __init__(self, max_sessions: int | None = None) -> None:
        self.sessions: set[WebSocket] = set()
        self.closing = False
        self.max_sessions = max_sessions


#: The application's live WebSocket sessions.
SESSIONS_KEY: Final = web.AppKey("aiohttp_spry.sessions", SessionRegistry)


async def run_session(response: UpgradeResponse, event: Event) -> web.StreamResponse:
    """Finish the handshake and run the session to its end.

    Raises:
        HTTPError: before the handshake completes only (503 while shutting
            down or at ``max_sessions``, aiohttp's 400 for a malformed handshake), so route error
            handlers can still shape it. Nothing raised by the session escapes.
        RuntimeError: the upgrade was made for another request.
    """
    request = event.request
    if response.event is not event:
        raise RuntimeError(
            f"{describe_request(request)}: the route returned an upgrade made for "
            "another request; return event.ws.upgrade() of this event"
        )
    registry = request.app[SESSIONS_KEY]
    if registry.closing:
        logger.warning("WebSocket handshake refused (shutting down): %s", describe_request(request))
        raise HTTPError(503, body="Server is shutting down.")
    if registry.max_sessions is not None and len(registry.sessions) >= registry.max_sessions:
        logger.warning(
            "WebSocket handshake refused (%d sessions open, max_sessions=%d): %s",
            len(registry.sessions),
            registry.max_sessions,
            describe_request(request),
        )
        raise HTTPError(
            503, body="Too many WebSocket sessions; try again later.", headers={"Retry-After": "1"}
        )
    try:
        with require_masked_frames(request, response):
            await response.prepare(request)
    except (web.HTTPException, ValueError) as refused:
        # aiohttp's own handshake checks: missing or bad key (a key with
        # non-ASCII characters makes it raise ValueError instead of its 400).
        reason = refused.text if isinstance(refused, web.HTTPException) else "Handshake error"
        logger.warning(
            "WebSocket handshake refused (%s): %s client offered %s, server speaks %s",
            reason,
            describe_request(request),
            list(event.ws.requested_protocols),
            list(response.offered_protocols),
        )
        raise HTTPError(400, body=reason) from None
    except ConnectionResetError:
        # The client left before the 101 went out: nobody to answer. aiohttp
        # notices the closed connection and sends nothing for this response.
        logger.debug("WebSocket peer left during the handshake: %s", describe_request(request))
        return web.Response(status=499, reason="Client Closed Request")

    ws = WebSocket(response)
    registry.sessions.add(ws)
    logger.debug("WebSocket session opened: %s", ws)
    try:
        await response.session(ws)
    except asyncio.CancelledError:
        _end(ws, registry)
        raise
    except Exception as exc:
        await _fail(ws, response, exc)
    else:
        if not ws.closed:
            await response.close(code=CloseCode.OK)
    _end(ws, registry)
    logger.debug("WebSocket session ended with %s: %s", ws.close_code, ws)
    return response


def _end(ws: WebSocket, registry: SessionRegistry) -> None:
    """Forget a finished session: the registry, and every topic it subscribed to."""
    registry.sessions.discard(ws)
    if ws._topics is None and ws._backlog is None:
        ws._topics = ENDED  # never subscribed: nothing to leave
    else:
        ws.event.request.app[FANOUT_KEY].drop(ws)


async def _fail(ws: WebSocket, response: UpgradeResponse, exc: Exception) -> None:
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
        await response.close(code=CloseCode.INTERNAL_ERROR, message=b"internal error")


async def close_all(registry: SessionRegistry, timeout: float) -> None:
    """Refuse new sessions and close every open one with 1001, waiting at most ``timeout``.

    aiohttp closes no WebSocket on its own, and under ``adev runserver``
    handlers get only 0.1 s after ``on_shutdown``, so the close handshake has to
    happen here. Sessions still closing after ``timeout`` are dropped.
    """
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
