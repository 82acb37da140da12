"""Chat rooms on topic pub/sub: ``/rooms/{room}`` and the chat page at ``GET /``.

A member's text T reaches every *other* member of the room, in this process and,
with ``SPRY_BROKER_URL=redis://…``, in every other process, as JSON
``{"room": room, "from": <sender's ws.id>, "text": T}`` (plus ``"name"`` when
the member joined with ``?name=``). The sender does not get its own message back.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

from aiohttp import web

from aiohttp_spry import (
    SPRY_KEY,
    BinaryDataReceived,
    CloseCode,
    Event,
    HTTPError,
    Response,
    Spry,
    TextDataReceived,
    WebSocket,
)

log = logging.getLogger("example_app")

#: Room names: letters, digits, ``_ . -``; 1 to 64 characters.
ROOM = r"[A-Za-z0-9_.\-]{1,64}"
MAX_NAME = 40
MAX_ANNOUNCEMENT = 4096
PAGE = Path(__file__).resolve().parent / "static" / "index.html"
#: What a member receives (JSON Schema, for ``/asyncapi.json``).
ROOM_MESSAGE = {
    "type": "object",
    "title": "roomMessage",
    "description": "Another member's text, or an announcement (from 'http').",
    "properties": {
        "room": {"type": "string"},
        "from": {"type": "string", "description": "The sender's ws.id, or 'http'."},
        "text": {"type": "string"},
        "name": {"type": "string", "description": "The sender's ?name=, when it gave one."},
    },
    "required": ["room", "from", "text"],
}


def topic_of(room: str) -> str:
    return f"room:{room}"


@functools.cache
def page() -> str:
    return PAGE.read_text(encoding="utf-8")


async def index(event: Event) -> web.StreamResponse:
    """``GET /``: the chat page (plain HTML and JavaScript)."""
    return Response.html(page())


async def room(event: Event) -> Any:
    """``/rooms/{room}``: WebSocket to join; ``POST`` text to announce; ``GET`` for counts."""
    room = event.params["room"]
    if event.method == "POST":
        # A plain form POST needs no CORS preflight: refuse other sites' pages
        # like the WebSocket handshake does, and bound what one POST carries.
        origin = event.headers.get("Origin")
        if origin is not None and origin.partition("://")[2] != event.request.host:
            raise HTTPError(403, body={"error": "cross-origin announcements are refused"})
        if (event.request.content_length or 0) > MAX_ANNOUNCEMENT:
            raise HTTPError(413, body={"error": f"at most {MAX_ANNOUNCEMENT} bytes"})
        text = await event.request.text()
        if len(text.encode()) > MAX_ANNOUNCEMENT:
            raise HTTPError(413, body={"error": f"at most {MAX_ANNOUNCEMENT} bytes"})
        message = {"room": room, "from": "http", "text": text}
        delivered = await event.app[SPRY_KEY].publish(event.app, topic_of(room), message)
        return {"room": room, "delivered_here": delivered}
    if not event.ws.is_upgrade_request:
        members = Spry.subscribers(event.app, topic_of(room))
        scheme = "wss" if event.request.secure else "ws"
        return {
            "room": room,
            "members_here": len(members),
            "hint": f"connect a WebSocket to {scheme}://{event.request.host}/rooms/{room}?name=you",
        }
    name = event.query.get("name", "").strip()[:MAX_NAME]

    async def session(ws: WebSocket) -> None:
        await member(ws, room, name)

    return event.ws.upgrade(session)


async def member(ws: WebSocket, room: str, name: str) -> None:
    """Relay this member's text to the others until it leaves."""
    topic = topic_of(room)
    await ws.subscribe(topic)
    log.info("Member %s (%s) joined room %r", ws.id, name or "anonymous", room)
    async for message in ws.events:
        match message:
            case TextDataReceived(text=text):
                out = {"room": room, "from": ws.id, "text": text}
                if name:
                    out["name"] = name
                await ws.publish(topic, out)
            case BinaryDataReceived():
                await ws.close(CloseCode.UNSUPPORTED_DATA, "rooms carry text messages only")
    log.info("Member %s left room %r", ws.id, room)
