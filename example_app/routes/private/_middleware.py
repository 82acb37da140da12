"""Everything under ``/private`` demands a token before any WebSocket upgrade.

Browsers cannot set headers on a WebSocket handshake, so the token may come as
``?token=...`` as well as ``Authorization: Bearer ...``. The expected value is
``SPRY_PRIVATE_TOKEN`` from the environment (``let-me-in`` for the example).
"""

from __future__ import annotations

import hmac
import logging
import os

from aiohttp import web

from aiohttp_spry import Event, HTTPError, Next

log = logging.getLogger("example_app")


def expected_token() -> str:
    return os.environ.get("SPRY_PRIVATE_TOKEN", "let-me-in")


def presented_token(event: Event) -> str:
    authorization = event.headers.get("Authorization", "")
    if authorization.startswith("Bearer "):
        return authorization.removeprefix("Bearer ")
    return event.query.get("token", "")


async def require_token(event: Event, next: Next) -> web.StreamResponse:
    if event.ws.is_upgrade_request and not hmac.compare_digest(
        presented_token(event), expected_token()
    ):
        log.warning("Refused a private upgrade without a valid token: peer=%s", event.peer)
        raise HTTPError(
            401,
            body={"error": "token required", "hint": "connect with ?token=<token>"},
            headers={"WWW-Authenticate": "Bearer"},
        )
    return await next()


middleware = [require_token]
