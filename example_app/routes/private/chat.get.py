"""``GET /private/chat``: a WebSocket-only echo chat behind the folder's token check."""

from __future__ import annotations

from aiohttp import web

from aiohttp_spry import Event, TextDataReceived, WebSocket

WELCOME = "Connected to the private Spry chat."


async def session(ws: WebSocket) -> None:
    await ws.send_text(WELCOME)
    async for message in ws.events:
        if isinstance(message, TextDataReceived):
            await ws.send_text(f"Private echo: {message.text}")


def handler(event: Event) -> web.StreamResponse:
    # No fallback: a plain request gets upgrade()'s 426, which _error.py turns
    # into a friendly answer.
    return event.ws.upgrade(session)
