"""The example's chat rooms v2 (``/rooms/{room}``) and page (``GET /``), on the in-memory broker.

The contract, checked from outside: a welcome first, message / ack / join / leave
frames, ``since=EPOCH:OFFSET`` recovery, ``presence=1`` opt-in, POST and GET fields.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient

from aiohttp_spry import Spry
from example_app.main import create_app

Client = TestClient[web.Request, web.Application]
TIMEOUT = 5.0
WELCOME_KEYS = {"type", "room", "you", "epoch", "offset", "recovered"}


async def join(client: Client, room: str, **query: str) -> tuple[Any, dict[str, Any]]:
    """Connect and read the welcome (sent once the member is subscribed)."""
    ws = await client.ws_connect(f"/rooms/{room}", params=query)
    welcome = await ws.receive_json(timeout=TIMEOUT)
    assert welcome["type"] == "welcome", welcome
    return ws, welcome


async def nothing_more(ws: Any) -> None:
    await ws.ping()
    with pytest.raises(asyncio.TimeoutError):
        await ws.receive(timeout=0.2)


async def test_the_welcome_comes_first_with_the_rooms_position_and_no_members_by_default(
    aiohttp_client: Any,
) -> None:
    client = await aiohttp_client(await create_app())
    a, welcome = await join(client, "lobby", name="ann")
    assert set(welcome) == WELCOME_KEYS
    assert welcome["room"] == "lobby" and welcome["recovered"] is None
    assert welcome["offset"] == 0 and len(welcome["you"]) == 16
    await client.post("/rooms/lobby", data="one")
    assert (await a.receive_json(timeout=TIMEOUT))["offset"] == 1
    b, second = await join(client, "lobby")
    assert second["offset"] == 1 and second["epoch"] == welcome["epoch"]
    assert second["you"] != welcome["you"]
    await nothing_more(a)  # no join frame without presence=1
    for ws in (a, b):
        await ws.close()


async def test_a_members_text_reaches_every_other_member_with_its_position_and_the_sender_an_ack(
    aiohttp_client: Any,
) -> None:
    client = await aiohttp_client(await create_app())
    (a, wa), (b, _), (c, _) = [await join(client, "chat") for _ in range(3)]
    await a.send_str("hello room")
    ack = await a.receive_json(timeout=TIMEOUT)
    assert ack == {"type": "ack", "room": "chat", "epoch": wa["epoch"], "offset": 1}
    got_b = await b.receive_json(timeout=TIMEOUT)
    got_c = await c.receive_json(timeout=TIMEOUT)
    assert (
        got_b
        == got_c
        == {
            "type": "message",
            "room": "chat",
            "from": wa["you"],
            "text": "hello room",
            "epoch": wa["epoch"],
            "offset": 1,
        }
    )
    await nothing_more(a)  # the sender got its ack, not its message
    for ws in (a, b, c):
        await ws.close()


async def test_a_member_that_gave_a_name_is_named_in_its_messages(aiohttp_client: Any) -> None:
    client = await aiohttp_client(await create_app())
    alice, _ = await join(client, "named", name="  Alice  ")
    bob, _ = await join(client, "named")
    await alice.send_str("hi")
    message = await bob.receive_json(timeout=TIMEOUT)
    assert message["name"] == "Alice" and message["text"] == "hi"
    await alice.close()
    await bob.close()


async def test_rooms_are_separate_and_number_their_messages_apart(aiohttp_client: Any) -> None:
    client = await aiohttp_client(await create_app())
    red, _ = await join(client, "red")
    blue_a, _ = await join(client, "blue")
    blue_b, _ = await join(client, "blue")
    await blue_a.send_str("blue only")
    assert (await blue_b.receive_json(timeout=TIMEOUT))["text"] == "blue only"
    reply = await client.post("/rooms/red", data="announcement")
    assert (await reply.json())["offset"] == 1  # red's first, though blue has one
    message = await red.receive_json(timeout=TIMEOUT)
    assert message["text"] == "announcement" and message["offset"] == 1
    for ws in (red, blue_a, blue_b):
        await ws.close()


async def test_post_announces_with_a_position_and_get_describes_the_room(
    aiohttp_client: Any,
) -> None:
    client = await aiohttp_client(await create_app())
    (a, wa), (b, wb) = await join(client, "news", name="ann"), await join(client, "news")
    reply = await client.post("/rooms/news", data="extra!")
    assert reply.status == 200
    assert await reply.json() == {"room": "news", "epoch": wa["epoch"], "offset": 1}
    for ws in (a, b):
        assert await ws.receive_json(timeout=TIMEOUT) == {
            "type": "message",
            "room": "news",
            "from": "http",
            "text": "extra!",
            "epoch": wa["epoch"],
            "offset": 1,
        }
    info = await (await client.get("/rooms/news")).json()
    assert info["room"] == "news" and info["members_here"] == 2
    assert info["member_count"] == 2 and (info["epoch"], info["offset"]) == (wa["epoch"], 1)
    assert sorted(info["members"], key=lambda m: m["name"]) == [
        {"id": wb["you"], "name": ""},
        {"id": wa["you"], "name": "ann"},
    ]
    for ws in (a, b):
        await ws.close()


@pytest.mark.parametrize("since", ["nocolon", "abc:x", "abc:-1", "abc:1.5", ":3", "abc:"])
async def test_a_malformed_since_is_refused_before_the_upgrade_naming_the_form(
    aiohttp_client: Any, since: str
) -> None:
    client = await aiohttp_client(await create_app())
    reply = await client.get(
        "/rooms/x",
        params={"since": since},
        headers={
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version": "13",
        },
    )
    assert reply.status == 400
    assert "EPOCH:OFFSET" in (await reply.json())["error"]
    assert Spry.sessions(client.app) == ()


async def test_reconnecting_with_since_replays_what_was_missed_own_messages_included(
    aiohttp_client: Any,
) -> None:
    client = await aiohttp_client(await create_app())
    a, _ = await join(client, "back", name="a")
    b, _ = await join(client, "back", name="b")
    await a.send_str("seen by b")
    seen = await b.receive_json(timeout=TIMEOUT)
    await a.receive_json(timeout=TIMEOUT)  # ack
    await b.close()
    for n in range(3):
        await a.send_str(f"missed {n}")
        await a.receive_json(timeout=TIMEOUT)
    await client.post("/rooms/back", data="missed announcement")
    await a.receive_json(timeout=TIMEOUT)
    b2, welcome = await join(client, "back", name="b", since=f"{seen['epoch']}:{seen['offset']}")
    assert welcome["recovered"] is True and welcome["offset"] == seen["offset"] + 4
    replay = [await b2.receive_json(timeout=TIMEOUT) for _ in range(4)]
    assert [m["text"] for m in replay] == [
        "missed 0",
        "missed 1",
        "missed 2",
        "missed announcement",
    ]
    assert [m["offset"] for m in replay] == list(range(seen["offset"] + 1, seen["offset"] + 5))
    # Its own messages come back in a replay: a's, replayed to a.
    a2, own = await join(client, "back", since=f"{seen['epoch']}:{seen['offset']}")
    assert own["recovered"] is True
    own_replay = [await a2.receive_json(timeout=TIMEOUT) for _ in range(4)]
    assert [m.get("name") for m in own_replay] == ["a", "a", "a", None]
    await a.send_str("live")
    assert (await b2.receive_json(timeout=TIMEOUT))["text"] == "live"
    await nothing_more(b2)
    for ws in (a, a2, b2):
        await ws.close()


async def test_a_well_formed_since_the_server_cannot_serve_is_accepted_not_recovered(
    aiohttp_client: Any,
) -> None:
    client = await aiohttp_client(await create_app())
    ws, welcome = await join(client, "old", since="someotherepoch:12")
    assert welcome["recovered"] is False and welcome["offset"] == 0
    await nothing_more(ws)
    await ws.close()


async def test_presence_members_and_join_leave_go_only_to_members_that_asked(
    aiohttp_client: Any,
) -> None:
    client = await aiohttp_client(await create_app())
    watcher, w = await join(client, "pres", name="wat", presence="1")
    assert w["members"] == [{"id": w["you"], "name": "wat"}]  # the newcomer included
    silent, s = await join(client, "pres", name="sil")
    assert "members" not in s
    assert await watcher.receive_json(timeout=TIMEOUT) == {
        "type": "join",
        "room": "pres",
        "member": {"id": s["you"], "name": "sil"},
    }
    other, o = await join(client, "pres", name="oth", presence="1")
    assert sorted(m["name"] for m in o["members"]) == ["oth", "sil", "wat"]
    assert (await watcher.receive_json(timeout=TIMEOUT))["member"]["name"] == "oth"
    await silent.close()
    for ws in (watcher, other):
        leave = await ws.receive_json(timeout=TIMEOUT)
        assert leave == {"type": "leave", "room": "pres", "member": {"id": s["you"], "name": "sil"}}
    await nothing_more(watcher)
    for ws in (watcher, other):
        await ws.close()


async def test_only_message_frames_carry_text(aiohttp_client: Any) -> None:
    client = await aiohttp_client(await create_app())
    a, welcome = await join(client, "frames", presence="1", name="a")
    b, _ = await join(client, "frames", presence="1", name="b")
    await b.send_str("hi")
    frames = [welcome] + [await a.receive_json(timeout=TIMEOUT) for _ in range(2)]
    ack = await b.receive_json(timeout=TIMEOUT)
    for frame in [*frames, ack]:
        assert ("text" in frame) == (frame["type"] == "message"), frame
    assert [f["type"] for f in frames] == ["welcome", "join", "message"] and ack["type"] == "ack"
    for ws in (a, b):
        await ws.close()


async def test_binary_messages_are_refused_with_1003(aiohttp_client: Any) -> None:
    client = await aiohttp_client(await create_app())
    ws, _ = await join(client, "text-only")
    await ws.send_bytes(b"\x00")
    closing = await ws.receive(timeout=TIMEOUT)
    assert closing.type is WSMsgType.CLOSE and closing.data == 1003
    await ws.close()


async def test_invalid_room_names_are_404(aiohttp_client: Any) -> None:
    client = await aiohttp_client(await create_app())
    assert (await client.get("/rooms/" + "x" * 65)).status == 404
    assert (await client.get("/rooms/a%20b")).status == 404


async def test_the_chat_page_is_served_at_the_root(aiohttp_client: Any) -> None:
    client = await aiohttp_client(await create_app())
    reply = await client.get("/")
    assert reply.status == 200
    assert reply.content_type == "text/html"
    page = await reply.text()
    assert "/rooms/" in page and "<script" in page


async def test_announcements_from_another_sites_page_are_refused(aiohttp_client: Any) -> None:
    client = await aiohttp_client(await create_app())
    member, _ = await join(client, "guarded")
    foreign = await client.post(
        "/rooms/guarded", data="spam", headers={"Origin": "http://evil.example"}
    )
    assert foreign.status == 403
    own = await client.post(
        "/rooms/guarded", data="hello", headers={"Origin": f"http://127.0.0.1:{client.port}"}
    )
    assert own.status == 200
    # The member got the same-origin announcement only.
    assert (await member.receive_json(timeout=TIMEOUT))["text"] == "hello"
    too_big = await client.post("/rooms/guarded", data="x" * 5000)
    assert too_big.status == 413
    await member.close()
