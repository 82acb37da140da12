"""What the WebSocket side counts for metrics: plain ints, read at scrape time.

Nothing here is created unless metrics are enabled
(:func:`aiohttp_spry.metrics.enable_metrics`): without them the registry holds
no counters, sessions are plain :class:`~aiohttp_spry.websocket.WebSocket`\\ s
and no message pays for counting. With them, each count is one integer
addition on the event loop's thread (no lock, no label lookup); a Prometheus
collector reads the totals when it is scraped.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web


class SessionCounters:
    """Handshakes, closes and messages of one application's WebSocket sessions.

    Attributes:
        accepted: handshakes that became sessions.
        refused: refused handshakes by HTTP status (400, 403, 405, 426, 501, 503).
        closes: ended sessions by close code (1006 when no close frame was exchanged).
        received_text, received_binary: messages the peers sent.
        sent_text, sent_binary: messages session code sent with ``ws.send_*``
            (pub/sub deliveries written straight to the transport are
            counted by the fan-out instead).
    """

    __slots__ = (
        "accepted",
        "closes",
        "received_binary",
        "received_text",
        "refused",
        "sent_binary",
        "sent_text",
    )

    def __init__(self) -> None:
        self.accepted = 0
        self.refused: dict[int, int] = {}
        self.closes: dict[int, int] = {}
        self.received_text = 0
        self.received_binary = 0
        self.sent_text = 0
        self.sent_binary = 0

    def refuse(self, status: int) -> None:
        """Count one refused handshake answered with ``status``."""
        self.refused[status] = self.refused.get(status, 0) + 1

    def close(self, code: int | None) -> None:
        """Count one ended session by its close code (``None``: no close frame, 1006)."""
        key = 1006 if code is None else code
        self.closes[key] = self.closes.get(key, 0) + 1


#: The application's WebSocket counters, present only when metrics are enabled.
SESSION_COUNTERS_KEY: Final = web.AppKey("aiohttp_spry.session_counters", SessionCounters)
