"""``event.locals``: values one request's middleware, handler and helpers share."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any


class Locals(dict[Hashable, Any]):
    """A dict for one request, with Spry's ``get`` / ``set`` / ``has``.

    Example::

        async def auth(event: Event, next: Next) -> web.StreamResponse:
            event.locals.set("user", await find_user(event))
            return await next()

        def handler(event: Event) -> str:
            return f"hello {event.locals.get('user')}" if event.locals.has("user") else "hi"

    It is a plain ``dict`` too (``event.locals["user"]``), so any key works,
    including an object used as a private key.
    """

    __slots__ = ()

    def set(self, key: Hashable, value: Any) -> None:
        """Store ``value`` under ``key`` for the rest of this request."""
        self[key] = value

    def has(self, key: Hashable) -> bool:
        """Whether ``key`` was set during this request."""
        return key in self
