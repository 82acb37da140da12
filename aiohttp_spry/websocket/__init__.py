"""WebSockets the Spry way: ``event.ws`` (the handshake) and ``WebSocket`` (the session).

One module per job, along the flow of a connection:

- :mod:`.rfc6455`: the protocol's rules (close codes, reasons, subprotocol tokens);
- :mod:`.handshake`: ``event.ws`` and the ``UpgradeResponse`` a route returns;
- :mod:`.session`: ``WebSocket``, running a session, the registry and shutdown;
- :mod:`.messages`: what ``ws.events`` yields;
- :mod:`.masking`: the client-masking check (the one use of aiohttp internals);
- :mod:`.counters`: what sessions count for metrics (only when metrics are on).
"""

from __future__ import annotations

from .handshake import EventWebSocket, SessionHandler, UpgradeResponse
from .messages import BinaryDataReceived, CloseReceived, TextDataReceived, WebSocketMessage
from .rfc6455 import CloseCode
from .session import SESSIONS_KEY, SessionRegistry, WebSocket

__all__ = [
    "SESSIONS_KEY",
    "BinaryDataReceived",
    "CloseCode",
    "CloseReceived",
    "EventWebSocket",
    "SessionHandler",
    "SessionRegistry",
    "TextDataReceived",
    "UpgradeResponse",
    "WebSocket",
    "WebSocketMessage",
]
