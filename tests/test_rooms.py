"""The example's chat rooms (``/rooms/{room}``) and page (``GET /``), on the in-memory broker."""

from __future__ import annotations

from typing import Any

from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient

from aiohttp_spry import Spry
from example_app.main import create_app
from tests.support.polling import eventually

Client = TestClient[web.Request, web.Application]
TIMEOUT = 5.0

async def members(client: Client, room: str, count: int, **query: str) -> list[Any]:
    joined = [await client.ws_connect(f"/rooms/{room}", params=query) for _ in range(count)]
    await wait_for_members(client, room, count)
    return joined


async def wait_for_members(client: Client, room: str, count: int) -> None:
    await eventually(
        lambda: len(Spry.subscribers(client.app, f"room:{room}")) >= count,
        what=f"{count} members joined {room!r}",
    )


async def test_a_members_text_reaches_every_other_member_as_json_and_not_the_sender(
    aiohttp_client: Any,
) -> None:
    client = await aiohttp_client(await create_app())
    a, b, c = await members(client, "lobby", 3)
    await a.send_str("hello room")
    got_b = await b.receive_json(timeout=TIMEOUT)
    got_c = await c.receive_json(timeout=TIMEOUT)
    assert got_b == got_c
    assert set(got_b) == {"room", "from", "text"}
    assert got_b["room"] == "lobby" and got_b["text"] == "hello room"
    sender_id = got_b["from"]
    assert len(sender_id) == 16 and int(sender_id, 16) >= 0
    # The sender got nothing: its next message is c's reply, with another id.
    await c.send_str("hi a")
    reply = await a.receive_json(timeout=TIMEOUT)
    assert reply["text"] == "hi a" and reply["from"] != sender_id
    assert (await b.receive_json(timeout=TIMEOUT))["from"] == reply["from"]
    for ws in (a, b, c):
        await ws.close()


async def test_a_member_that_gave_a_name_is_named_in_its_messages(aiohttp_client: Any) -> None:
    client = await aiohttp_client(await create_app())
    [alice] = await members(client, "named", 1, name="  Alice  ")
    bob = await client.ws_connect("/rooms/named")
    await wait_for_members(client, "named", 2)
    await alice.send_str("hi")
    message = await bob.receive_json(timeout=TIMEOUT)
    assert message["name"] == "Alice" and message["text"] == "hi"
    await alice.close()
    await bob.close()


async def test_rooms_are_separate(aiohttp_client: Any) -> None:
    client = await aiohttp_client(await create_app())
    [red] = await members(client, "red", 1)
    [blue_a, blue_b] = await members(client, "blue", 2)
    await blue_a.send_str("blue only")
    assert (await blue_b.receive_json(timeout=TIMEOUT))["text"] == "blue only"
    await red.send_str("red only")  # nobody else in red
    # red received nothing from blue: its next message is the announcement.
    await client.post("/rooms/red", data="announcement")
    assert (await red.receive_json(timeout=TIMEOUT))["text"] == "announcement"
    for ws in (red, blue_a, blue_b):
        await ws.close()


async def test_post_announces_to_every_member_and_get_counts_them(aiohttp_client: Any) -> None:
    client = await aiohttp_client(await create_app())
    joined = await members(client, "news", 2)
    reply = await client.post("/rooms/news", data="extra!")
    assert reply.status == 200
    assert await reply.json() == {"room": "news", "delivered_here": 2}
    for ws in joined:
        assert await ws.receive_json(timeout=TIMEOUT) == {
            "room": "news",
            "from": "http",
            "text": "extra!",
        }
    info = await (await client.get("/rooms/news")).json()
    assert info["room"] == "news" and info["members_here"] == 2
    for ws in joined:
        await ws.close()


async def test_binary_messages_are_refused_with_1003(aiohttp_client: Any) -> None:
    client = await aiohttp_client(await create_app())
    [ws] = await members(client, "text-only", 1)
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
    [member] = await members(client, "guarded", 1)
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
