"""Chat rooms v2 (history and presence): ``/rooms/{room}`` and the page at ``GET /``.

WebSocket ``/rooms/{room}?name=N&since=EPOCH:OFFSET&presence=1`` (all optional).
Rooms keep their last 200 messages for 600 s. The frames, in order:

- first ``{"type": "welcome", "room", "you", "epoch", "offset", "recovered", "members"?}``:
  ``offset`` is the position of the room's latest message (0 if none);
  ``recovered`` is ``null`` without ``since``, else whether every message after
  it follows; ``members`` (only with ``presence=1``) lists everyone present in
  the room in every process, the newcomer included, as ``{"id", "name"}``;
- then, when recovering, every missed message (the member's own included),
  then live ones (from everyone but the member):
  ``{"type": "message", "room", "from", "name"?, "text", "epoch", "offset"}``;
- ``{"type": "ack", "room", "epoch", "offset"}`` for each of the member's own messages;
- with ``presence=1``: ``{"type": "join"|"leave", "room", "member": {"id", "name"}}``
  when another member comes or goes (a room of silent members sends none).

``POST /rooms/{room}`` announces its text (a message ``from`` ``"http"``, with a
position like any other) and answers ``{"room", "epoch", "offset"}``.
``GET /rooms/{room}`` answers ``{"room", "members_here", "members", "member_count",
"epoch", "offset", "hint"}`` (``members`` and ``member_count`` count every process).
A malformed ``since`` is refused before the upgrade with 400; a well-formed one
the server cannot serve is accepted with ``"recovered": false``.
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
    Position,
    PresenceEvent,
    Response,
    Spry,
    TextDataReceived,
    WebSocket,
    parse_position,
)

log = logging.getLogger("example_app")

#: Room names: letters, digits, ``_ . -``; 1 to 64 characters.
ROOM = r"[A-Za-z0-9_.\-]{1,64}"
MAX_NAME = 40
MAX_ANNOUNCEMENT = 4096
#: What each room keeps: its last HISTORY_SIZE messages, for HISTORY_TTL seconds.
HISTORY_SIZE = 200
HISTORY_TTL = 600
TOPIC_PREFIX = "room:"
PAGE = Path(__file__).resolve().parent / "static" / "index.html"
#: What a member receives (JSON Schema, for ``/asyncapi.json``).
_MEMBER: dict[str, Any] = {
    "type": "object",
    "properties": {"id": {"type": "string"}, "name": {"type": "string"}},
    "required": ["id"],
}
_POSITION: dict[str, Any] = {
    "epoch": {"type": "string", "description": "One life of the room's history."},
    "offset": {"type": "integer", "minimum": 0},
}
#: What a member receives (rooms v2), for the AsyncAPI document: one schema per frame type.
ROOM_FRAMES: list[dict[str, Any]] = [
    {
        "type": "object",
        "title": "welcome",
        "description": "The first frame: the room's position, whether the recovery worked, "
        "and (with presence=1) everyone present.",
        "properties": {
            "type": {"const": "welcome"},
            "room": {"type": "string"},
            "you": {"type": "string"},
            **_POSITION,
            "recovered": {"type": ["boolean", "null"]},
            "members": {"type": "array", "items": _MEMBER},
        },
        "required": ["type", "room", "you", "epoch", "offset", "recovered"],
    },
    {
        "type": "object",
        "title": "message",
        "description": "A member's text or an announcement (from 'http'), with its position.",
        "properties": {
            "type": {"const": "message"},
            "room": {"type": "string"},
            "from": {"type": "string", "description": "The sender's ws.id, or 'http'."},
            "name": {"type": "string", "description": "The sender's ?name=, when it gave one."},
            "text": {"type": "string"},
            **_POSITION,
        },
        "required": ["type", "room", "from", "text", "epoch", "offset"],
    },
    {
        "type": "object",
        "title": "ack",
        "description": "The position of the member's own message.",
        "properties": {"type": {"const": "ack"}, "room": {"type": "string"}, **_POSITION},
        "required": ["type", "room", "epoch", "offset"],
    },
    *(
        {
            "type": "object",
            "title": kind,
            "description": f"A member {kind}s (only to members that joined with presence=1).",
            "properties": {
                "type": {"const": kind},
                "room": {"type": "string"},
                "member": _MEMBER,
            },
            "required": ["type", "room", "member"],
        }
        for kind in ("join", "leave")
    ),
]


def topic_of(room: str) -> str:
    return f"{TOPIC_PREFIX}{room}"


def keep_history(spry: Spry) -> None:
    """Rooms keep 200 messages for 600 s."""
    spry.history(TOPIC_PREFIX, size=HISTORY_SIZE, ttl=HISTORY_TTL)


@functools.cache
def page() -> str:
    return PAGE.read_text(encoding="utf-8")


async def index(event: Event) -> web.StreamResponse:
    """``GET /``: the chat page (plain HTML and JavaScript)."""
    return Response.html(page())


def member_of(id: str, info: Any) -> dict[str, str]:
    name = info.get("name", "") if isinstance(info, dict) else ""
    return {"id": id, "name": name}


def presence_frame(event: PresenceEvent) -> dict[str, Any]:
    """A join/leave frame; one function for every room, so one frame per event."""
    return {
        "type": event.change.value,
        "room": event.topic.removeprefix(TOPIC_PREFIX),
        "member": member_of(event.id, dict(event.info)),
    }


def since_of(event: Event) -> Position | None:
    """The ``since`` query parameter, checked before the upgrade.

    Raises:
        HTTPError: 400 naming the ``EPOCH:OFFSET`` form.
    """
    raw = event.query.get("since")
    if raw is None or raw == "":
        return None
    try:
        return parse_position(raw)
    except ValueError:
        raise HTTPError(
            400,
            body={
                "error": f"since must be EPOCH:OFFSET (the epoch and offset of the last "
                f"message you got, e.g. since=k3x9Qw:42), got {raw!r}"
            },
        ) from None


async def room(event: Event) -> Any:
    """``/rooms/{room}``: WebSocket to join; ``POST`` text to announce; ``GET`` for the room."""
    room = event.params["room"]
    topic = topic_of(room)
    spry = event.app[SPRY_KEY]
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
        message = {"type": "message", "room": room, "from": "http", "text": text}
        position = await spry.publish(event.app, topic, message, ack=True)
        return {"room": room, "epoch": position.epoch, "offset": position.offset}
    if not event.ws.is_upgrade_request:
        present = await Spry.presence(event.app, topic)
        position = await Spry.position(event.app, topic)
        scheme = "wss" if event.request.secure else "ws"
        return {
            "room": room,
            "members_here": len(Spry.subscribers(event.app, topic)),
            "members": [member_of(id, info) for id, info in present.items()],
            "member_count": len(present),
            "epoch": position.epoch,
            "offset": position.offset,
            "hint": f"connect a WebSocket to {scheme}://{event.request.host}/rooms/{room}?name=you",
        }
    since = since_of(event)
    name = event.query.get("name", "").strip()[:MAX_NAME]
    watch = event.query.get("presence") == "1"

    async def session(ws: WebSocket) -> None:
        await member(ws, spry, room, name, since, watch)

    return event.ws.upgrade(session)


async def member(
    ws: WebSocket, spry: Spry, room: str, name: str, since: Position | None, watch: bool
) -> None:
    """Welcome the member, replay what it missed, then relay its text until it leaves."""
    topic = topic_of(room)
    try:
        joined = await ws.subscribe(
            topic,
            since=since,
            hold=True,  # the welcome goes first
            presence={"name": name},
            presence_events=presence_frame if watch else False,
        )
    except ConnectionError as error:  # the broker (Redis) is unreachable: no position
        log.warning("Member %s could not join room %r: %s", ws.id, room, error)
        await ws.close(CloseCode.TRY_AGAIN_LATER, "rooms are unavailable; try again")
        return
    assert joined.position is not None  # rooms keep history
    welcome: dict[str, Any] = {
        "type": "welcome",
        "room": room,
        "you": ws.id,
        "epoch": joined.position.epoch,
        "offset": joined.position.offset,
        "recovered": joined.recovered,
    }
    if watch:
        present = await Spry.presence(ws.event.app, topic)
        welcome["members"] = [member_of(id, info) for id, info in present.items()]
    await ws.send_json(welcome)
    ws.resume(topic)
    log.info(
        "Member %s (%s) joined room %r at %s (since %s: recovered %s, %d replayed)",
        ws.id,
        name or "anonymous",
        room,
        joined.position,
        since,
        joined.recovered,
        joined.replayed,
    )
    async for message in ws.events:
        match message:
            case TextDataReceived(text=text):
                out = {"type": "message", "room": room, "from": ws.id, "text": text}
                if name:
                    out["name"] = name
                position = await ws.publish(topic, out, ack=True)
                await ws.send_json(
                    {
                        "type": "ack",
                        "room": room,
                        "epoch": position.epoch,
                        "offset": position.offset,
                    }
                )
            case BinaryDataReceived():
                await ws.close(CloseCode.UNSUPPORTED_DATA, "rooms carry text messages only")
    log.info("Member %s left room %r", ws.id, room)
