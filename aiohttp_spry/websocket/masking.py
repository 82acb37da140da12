"""RFC 6455 §5.1: a server must close the connection on an unmasked client frame.

aiohttp's frame parser accepts unmasked frames, and it offers no public hook
on the raw bytes, so this module holds the package's only use of an aiohttp
private attribute: the request handler's ``_payload_parser``, which receives
every byte of an upgraded connection. ``tests/test_masking.py`` fails loudly if
aiohttp changes it.

Only the *first* frame of each connection is checked, and then the check
removes itself, so it costs nothing per message: a client either masks or it
does not (browsers and every client library mask), and a peer that masks its
first frame and not a later one is not detected.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from aiohttp import WSCloseCode, web

logger = logging.getLogger("aiohttp_spry")

_PARSER_ATTRIBUTE = "_payload_parser"


class _Parser(Protocol):
    def feed_data(self, data: bytes) -> tuple[bool, bytes]: ...

    def feed_eof(self) -> None: ...


def require_masked_frames(request: web.BaseRequest, response: web.WebSocketResponse) -> None:
    """Put a one-shot mask check in front of aiohttp's parser for this connection.

    Call right after ``prepare()``. Does nothing if aiohttp's internals are not
    as expected (the test suite catches that case).
    """
    protocol = request.protocol
    parser = getattr(protocol, _PARSER_ATTRIBUTE, None)
    if parser is None or not hasattr(parser, "feed_data"):
        return
    setattr(protocol, _PARSER_ATTRIBUTE, _FirstFrameMaskCheck(protocol, parser, request, response))


class _FirstFrameMaskCheck:
    __slots__ = ("_closing", "_head", "_parser", "_protocol", "_request", "_response")

    def __init__(
        self,
        protocol: Any,
        parser: _Parser,
        request: web.BaseRequest,
        response: web.WebSocketResponse,
    ) -> None:
        self._protocol = protocol
        self._request = request
        self._parser = parser
        self._response = response
        self._head = b""
        self._closing: asyncio.Future[bool] | None = None

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if self._closing is not None:
            return False, b""  # refused: drop whatever else the peer sends
        if self._head or len(data) < 2:  # rare: the header came split
            data = self._head + bytes(data)
            if len(data) < 2:
                self._head = data
                return False, b""
        if data[1] & 0x80:
            # Checked once: from now on aiohttp's parser gets the bytes directly.
            setattr(self._protocol, _PARSER_ATTRIBUTE, self._parser)
            return self._parser.feed_data(data)
        self._refuse()
        return False, b""

    def feed_eof(self) -> None:
        self._parser.feed_eof()

    def _refuse(self) -> None:
        response = self._response
        logger.warning(
            "WebSocket client sent an unmasked frame (RFC 6455 §5.1), closing with 1002: "
            "%s %s peer=%s",
            self._request.method,
            self._request.path,
            self._request.remote,
        )
        # Held here (the connection holds this object) until the close is done.
        self._closing = asyncio.ensure_future(
            response.close(code=WSCloseCode.PROTOCOL_ERROR, message=b"unmasked frame")
        )


def mask_check_available() -> bool:
    """Whether this aiohttp lets the mask check see the bytes of a connection."""
    from aiohttp.web_protocol import RequestHandler

    return _PARSER_ATTRIBUTE in getattr(RequestHandler, "__slots__", ())


def warn_if_unavailable() -> None:
    """Log one WARNING when the mask check cannot be installed on this aiohttp."""
    if not mask_check_available():
        logger.warning(
            "aiohttp's internals changed: the WebSocket client-masking check (RFC 6455 §5.1) "
            "is off; unmasked client frames will be accepted"
        )
