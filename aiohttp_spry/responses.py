"""Response helpers, and the rule that turns a handler's return value into a response."""

from __future__ import annotations

import json
import traceback
from typing import Any

from aiohttp import web
from aiohttp.typedefs import LooseHeaders

Headers = LooseHeaders | None


class Response:
    """Builders for the responses a Spry handler usually returns.

    Spry's ``Response.json(body, ResponseInit(status: 500))`` reads here as
    ``Response.json(body, status=500)``. Each builder returns a plain
    :class:`aiohttp.web.Response`, so anything aiohttp can do with a response
    (cookies, extra headers) still works.

    Example::

        @spry.route("/health")
        def health(event: Event) -> web.Response:
            return Response.json({"ok": True}, headers={"Cache-Control": "no-store"})

    >>> Response.json({"ok": True}).text
    '{"ok": true}'
    """

    __slots__ = ()

    @staticmethod
    def json(data: Any, *, status: int = 200, headers: Headers = None) -> web.Response:
        """Serialize ``data`` as JSON (``application/json``; UTF-8).

        Raises:
            TypeError: ``data`` is not JSON-serializable.
        """
        return web.Response(
            text=json.dumps(data), status=status, headers=headers, content_type="application/json"
        )

    @staticmethod
    def text(
        text: str,
        *,
        status: int = 200,
        headers: Headers = None,
        content_type: str = "text/plain",
    ) -> web.Response:
        """Return ``text`` as ``text/plain; charset=utf-8`` (or ``content_type``)."""
        return web.Response(text=text, status=status, headers=headers, content_type=content_type)

    @staticmethod
    def html(html: str, *, status: int = 200, headers: Headers = None) -> web.Response:
        """Return ``html`` as ``text/html; charset=utf-8``."""
        return web.Response(text=html, status=status, headers=headers, content_type="text/html")

    @staticmethod
    def empty(*, status: int = 204, headers: Headers = None) -> web.Response:
        """Return a response without a body (``204 No Content`` by default)."""
        return web.Response(status=status, headers=headers)


def to_response(result: object) -> web.StreamResponse:
    """Turn what a handler returned into an aiohttp response.

    aiohttp responses pass through; ``dict``/``list`` become JSON, ``str`` plain
    text, ``bytes`` ``application/octet-stream`` and ``None`` a 204.

    Raises:
        TypeError: the value is none of these, naming its type.
    """
    # Cheap checks first: isinstance(x, web.StreamResponse) is an ABC check.
    if isinstance(result, str):
        return web.Response(text=result)
    if type(result) is web.Response or isinstance(result, web.StreamResponse):
        return result
    if isinstance(result, (dict, list)):
        return Response.json(result)
    if isinstance(result, (bytes, bytearray, memoryview)):
        return web.Response(body=bytes(result), content_type="application/octet-stream")
    if result is None:
        return Response.empty()
    raise TypeError(
        f"a Spry handler returned {type(result).__name__!s}; expected an aiohttp response, "
        "dict, list, str, bytes, None, or the result of event.ws.upgrade()"
    )


def internal_error_response(exc: BaseException, *, debug: bool) -> web.Response:
    """The generic 500 sent for an unhandled handler exception.

    The body never shows a traceback unless the extension runs with ``debug=True``.
    """
    if not debug:
        return Response.text("500: Internal Server Error", status=500)
    details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return Response.text(f"500: Internal Server Error\n\n{details}", status=500)
