"""The package's exceptions: what a handler raises on purpose, and what the package raises."""

from __future__ import annotations

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

    Example::

        @spry.route("/rooms/{id}")
        async def room(event: Event) -> dict[str, str]:
            if event.params["id"] not in rooms:
                raise HTTPError(404, body={"error": "no such room"})
            return {"room": event.params["id"]}

    >>> str(HTTPError(404, body="no such room"))
    "HTTP 404 Not Found: 'no such room'"

    Raises:
        TypeError: ``status`` is not an ``int``.
        ValueError: ``status`` is not a 4xx or 5xx code.
    """

    def __init__(self, status: int, body: Any = None, headers: Headers = None) -> None:
        if not isinstance(status, int) or isinstance(status, bool):
            raise TypeError(
                f"HTTPError status must be an int such as 404, got {type(status).__name__} "
                f"{status!r}"
            )
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


class NotFoundError(HTTPError):
    """No route matched a request whose path lies under a scope with error handlers.

    Error handlers receive it like any other error, so a scope can shape its own
    404s. ``method`` and ``path`` say what was asked for.

    >>> str(NotFoundError("GET", "/nowhere"))
    'HTTP 404 Not Found: no route for GET /nowhere'
    """

    def __init__(self, method: str, path: str) -> None:
        super().__init__(404, body="404: Not Found")
        self.method = method
        self.path = path

    def __str__(self) -> str:
        return f"HTTP 404 Not Found: no route for {self.method} {self.path}"


class PeerNotReadingError(ConnectionResetError):
    """A send waited ``send_timeout`` for a peer that does not read; the connection is gone.

    Raised by ``ws.send_*``; the session ends like any lost connection (logged
    once at WARNING, no 1011).
    """


class RouteConflictError(ValueError):
    """Two files (or one malformed file) in a routes folder cannot both be served."""
