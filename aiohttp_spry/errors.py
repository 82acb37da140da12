"""HTTPError, and how an exception raised by a handler becomes a response."""

from __future__ import annotations

import traceback
from http import HTTPStatus
from typing import Any

from aiohttp import web

from .responses import Headers, Response


class HTTPError(Exception):
    """Raise anywhere in a Spry handler to answer with an HTTP error.

    Spry's ``HTTPError(status, body:, headers:)``. A ``dict`` or ``list`` body is
    sent as JSON, a ``str`` as plain text, and no body as ``"<status>: <reason>"``
    (aiohttp's own wording). aiohttp's ``web.HTTPException`` classes keep working
    too; use whichever reads better.

    Example:
        >>> @spry.route("/rooms/{id}")
        ... async def room(event: Event) -> dict[str, str]:
        ...     if event.params["id"] not in rooms:
        ...         raise HTTPError(404, body={"error": "no such room"})
        ...     return {"room": event.params["id"]}

    Raises:
        ValueError: ``status`` is not a 4xx or 5xx code.
    """

    def __init__(self, status: int, body: Any = None, headers: Headers = None) -> None:
        if not 400 <= status <= 599:
            raise ValueError(f"HTTPError status must be a 4xx or 5xx code, got {status!r}")
        self.status = status
        self.body = body
        self.headers = headers
        super().__init__(status, body)

    @property
    def reason(self) -> str:
        """The standard reason phrase for :attr:`status` (``""`` if unregistered)."""
        try:
            return HTTPStatus(self.status).phrase
        except ValueError:
            return ""

    def __str__(self) -> str:
        detail = f": {self.body!r}" if self.body is not None else ""
        return f"HTTP {self.status} {self.reason}{detail}"

    def to_response(self) -> web.Response:
        """Build the response this error stands for."""
        if isinstance(self.body, (dict, list)):
            return Response.json(self.body, status=self.status, headers=self.headers)
        text = f"{self.status}: {self.reason}" if self.body is None else str(self.body)
        return Response.text(text, status=self.status, headers=self.headers)


def internal_error_response(exc: BaseException, *, debug: bool) -> web.Response:
    """The generic 500 sent for an unhandled handler exception.

    The body never shows a traceback unless the extension runs with ``debug=True``.
    """
    if not debug:
        return Response.text("500: Internal Server Error", status=500)
    details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return Response.text(f"500: Internal Server Error\n\n{details}", status=500)
