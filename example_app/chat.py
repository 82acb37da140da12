"""The tutorial's ``routes/chat.get.dart``, ported: one route, HTTP fallback and WebSocket.

Shared by the decorator app (``main.create_app``) and the file-routes app
(``routes/chat.get.py``), so both serve exactly the same contract.
"""

from __future__ import annotations

import logging

from aiohttp import web

from aiohttp_spry import (
    BinaryDataReceived,
    CloseReceived,
    Event,
    Response,
    TextDataReceived,
    WebSocket,
)

log = logging.getLogger("example_app")

WELCOME = "Connected to Spry WebSocket server! Send a message and I will echo it back."
PROTOCOL = "spry-chat-v1"


async def chat(event: Event) -> web.StreamResponse:
    """``GET /chat``: JSON for plain HTTP clients, the echo chat for WebSocket clients."""
    log.info("WebSocket route called: %s %s peer=%s", event.method, event.pathname, event.peer)
    log.info("WebSocket supported: %s", event.ws.is_supported)
    log.info("WebSocket upgrade request: %s", event.ws.is_upgrade_request)
    if not event.ws.is_supported or not event.ws.is_upgrade_request:
        log.info("Returning HTTP fallback")
        return Response.json(
            {
                "message": "This endpoint supports WebSocket connections",
                "hint": f"Use a WebSocket client to connect to ws://{event.request.host}/chat",
                "supported": event.ws.is_supported,
                "upgradeRequest": event.ws.is_upgrade_request,
            }
        )
    # Offering a subprotocol is safe here: aiohttp_spry selects it only when the
    # client offered it too, and accepts clients that offered none.
    log.info("Attempting WebSocket upgrade")
    return event.ws.upgrade(echo_session, protocol=PROTOCOL)


async def echo_session(ws: WebSocket) -> None:
    """Welcome the client, echo its text, acknowledge its binary messages."""
    log.info("WebSocket connection established (protocol=%s)", ws.protocol)
    await ws.send_text(WELCOME)
    async for message in ws.events:
        match message:
            case TextDataReceived(text=text):
                log.info("Received text: %s", text)
                await ws.send_text(f"Echo: {text}")
            case BinaryDataReceived():
                log.info("Received binary data")
                await ws.send_text("[Binary data received, not echoed]")
            case CloseReceived(code=code):
                log.info("Connection closed (code=%s)", code)
