"""Both example apps (decorators and file routes) serve the tutorial's contract."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from example_app.chat import WELCOME
from example_app.main import create_app, create_file_routes_app

FACTORIES = pytest.mark.parametrize(
    "factory", [create_app, create_file_routes_app], ids=["decorators", "file-routes"]
)


@FACTORIES
async def test_chat_fallback_json(
    aiohttp_client: Any, factory: Callable[[], Awaitable[web.Application]]
) -> None:
    client = await aiohttp_client(await factory())
    resp = await client.get("/chat")
    assert resp.status == 200
    assert await resp.json() == {
        "message": "This endpoint supports WebSocket connections",
        "hint": f"Use a WebSocket client to connect to ws://127.0.0.1:{client.port}/chat",
        "supported": True,
        "upgradeRequest": False,
    }


@FACTORIES
@pytest.mark.parametrize(("offered", "agreed"), [((), None), (("spry-chat-v1",), "spry-chat-v1")])
async def test_chat_welcome_echo_binary(
    aiohttp_client: Any,
    factory: Callable[[], Awaitable[web.Application]],
    offered: tuple[str, ...],
    agreed: str | None,
) -> None:
    client = await aiohttp_client(await factory())
    async with client.ws_connect("/chat", protocols=offered) as ws:
        assert ws.protocol == agreed
        assert await ws.receive_str() == WELCOME
        await ws.send_str("Hello Spry!")
        assert await ws.receive_str() == "Echo: Hello Spry!"
        await ws.send_bytes(b"\x00")
        assert await ws.receive_str() == "[Binary data received, not echoed]"


async def test_private_chat_plain_request_gets_friendly_answer_not_426(aiohttp_client: Any) -> None:
    client = await aiohttp_client(await create_file_routes_app())
    resp = await client.get("/private/chat")
    assert resp.status == 200
    assert (await resp.json())["message"] == "This private endpoint only speaks WebSocket"


async def test_private_chat_refuses_upgrade_without_token(aiohttp_client: Any) -> None:
    client = await aiohttp_client(await create_file_routes_app())
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/private/chat?token=wrong")
    assert refused.value.status == 401


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/private/chat?token=let-me-in", {}),
        ("/private/chat", {"Authorization": "Bearer let-me-in"}),
    ],
)
async def test_private_chat_accepts_token(
    aiohttp_client: Any, path: str, headers: dict[str, str]
) -> None:
    client = await aiohttp_client(await create_file_routes_app())
    async with client.ws_connect(path, headers=headers) as ws:
        assert await ws.receive_str() == "Connected to the private Spry chat."
        await ws.send_str("psst")
        assert await ws.receive_str() == "Private echo: psst"


async def test_private_token_comes_from_environment(
    aiohttp_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPRY_PRIVATE_TOKEN", "other")
    client = await aiohttp_client(await create_file_routes_app())
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await client.ws_connect("/private/chat?token=let-me-in")
    async with client.ws_connect("/private/chat?token=other") as ws:
        assert await ws.receive_str() == "Connected to the private Spry chat."


async def test_open_chat_needs_no_token_in_file_routes_app(aiohttp_client: Any) -> None:
    client = await aiohttp_client(await create_file_routes_app())
    async with client.ws_connect("/chat") as ws:
        assert await ws.receive_str() == WELCOME
