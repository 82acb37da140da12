"""The package's loggers, and the facts every log line about a request starts with.

Everything logs under ``aiohttp_spry`` (handshakes, sessions, routes) and
``aiohttp_spry.pubsub`` (fan-out and brokers), so one
``logging.getLogger("aiohttp_spry").setLevel(...)`` governs the package.
"""

from __future__ import annotations

import logging
from typing import Final

from aiohttp import web

#: Routes, handshakes and sessions.
logger: Final = logging.getLogger("aiohttp_spry")
#: Fan-out and brokers.
pubsub_logger: Final = logging.getLogger("aiohttp_spry.pubsub")


def describe_request(request: web.BaseRequest) -> str:
    """``GET /chat peer=127.0.0.1``: the facts every log line about a request starts with."""
    return f"{request.method} {request.path} peer={request.remote}"
