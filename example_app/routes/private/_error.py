"""Under ``/private``, a plain HTTP request gets a friendly answer instead of 426."""

from __future__ import annotations

from typing import Any

from aiohttp_spry import Event, HTTPError


def on_error(error: Exception, event: Event) -> Any:
    if isinstance(error, HTTPError) and error.status == 426:
        return {
            "message": "This private endpoint only speaks WebSocket",
            "hint": f"connect to ws://{event.request.host}{event.pathname}?token=<token>",
        }
    return None
