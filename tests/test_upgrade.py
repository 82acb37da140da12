"""The handshake side: event.ws checks, refusals in Spry's order, subprotocol negotiation."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from aiohttp_spry import Event, Spry, WebSocket

from .conftest import ClientFactory, spry_records
from .support.rawws import RawWebSocket

Client = TestClient[web.Request, web.Application]


async def greet(ws: WebSocket) -> None:
    await ws.send_text(f"protocol={ws.protocol}")


async def chat_client(
    serve: ClientFactory, methods: tuple[str, ...] = ("GET",), **upgrade: Any
) -> Client:
    """A server whose /chat falls back to JSON and otherwise upgrades with ``upgrade`` kwargs."""
    spry = Spry()

    @spry.route("/chat", methods=methods)
    def chat(event: Event) -> Any:
        if event.method == "GET" and not event.ws.is_upgrade_request:
            return {
                "supported": event.ws.is_supported,
                "upgradeRequest": event.ws.is_upgrade_request,
                "requested": list(event.ws.requested_protocols),
            }
        return event.ws.upgrade(greet, **upgrade)

    return await serve(spry)


async def raw(client: Client) -> RawWebSocket:
    return await RawWebSocket.connect("127.0.0.1", client.port)


async def test_plain_get_gets_http_fallback(serve: ClientFactory) -> None:
    # (HTTP/1.0 requests are plain requests too: see the 426 test below.)
    client = await chat_client(serve)
    resp = await client.get("/chat")
    assert await resp.json() == {"supported": True, "upgradeRequest": False, "requested": []}


async def test_upgrade_with_offered_protocol_selects_it(serve: ClientFactory) -> None:
    client = await chat_client(serve, protocol="spry-chat-v1")
    conn = await raw(client)
    reply = await conn.request(headers={"Sec-WebSocket-Protocol": "other, spry-chat-v1"})
    assert reply.status == 101
    assert reply.headers["sec-websocket-protocol"] == "spry-chat-v1"
    assert (await conn.read_frame()).payload == b"protocol=spry-chat-v1"
    await conn.aclose()


async def test_upgrade_without_offered_protocol_accepts_without_header(
    serve: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client = await chat_client(serve, protocol="spry-chat-v1")
    conn = await raw(client)
    reply = await conn.request()
    assert reply.status == 101
    assert "sec-websocket-protocol" not in reply.headers
    assert (await conn.read_frame()).payload == b"protocol=None"
    assert spry_records(caplog, logging.WARNING) == []
    await conn.aclose()


async def test_upgrade_with_no_overlap_accepts_without_header_and_warns(
    serve: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client = await chat_client(serve, protocol="spry-chat-v1")
    conn = await raw(client)
    reply = await conn.request(headers={"Sec-WebSocket-Protocol": "chat-v2, mqtt"})
    assert reply.status == 101
    assert "sec-websocket-protocol" not in reply.headers
    [warning] = spry_records(caplog, logging.WARNING)
    message = warning.getMessage()
    assert "GET /chat peer=127.0.0.1" in message
    assert "['chat-v2', 'mqtt']" in message
    assert "['spry-chat-v1']" in message
    await conn.aclose()


async def test_client_preference_order_decides_among_server_protocols(
    serve: ClientFactory,
) -> None:
    client = await chat_client(serve, protocols=["v1", "v2"])
    async with client.ws_connect("/chat", protocols=("v2", "v1")) as ws:
        assert ws.protocol == "v2"
        assert await ws.receive_str() == "protocol=v2"


async def test_strict_protocols_refuses_no_overlap_with_400_naming_supported(
    serve: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client = await chat_client(serve, protocol="spry-chat-v1", strict_protocols=True)
    conn = await raw(client)
    reply = await conn.request(headers={"Sec-WebSocket-Protocol": "other"})
    assert reply.status == 400
    assert b'"supported_protocols": ["spry-chat-v1"]' in reply.body
    assert b'"requested_protocols": ["other"]' in reply.body
    [warning] = spry_records(caplog, logging.WARNING)
    assert "strict_protocols" in warning.getMessage()
    assert "['other']" in warning.getMessage()
    await conn.aclose()


async def test_strict_protocols_refuses_client_offering_none(serve: ClientFactory) -> None:
    client = await chat_client(serve, protocol="spry-chat-v1", strict_protocols=True)
    conn = await raw(client)
    assert (await conn.request()).status == 400
    await conn.aclose()


async def test_strict_protocols_accepts_agreement(serve: ClientFactory) -> None:
    client = await chat_client(serve, protocol="spry-chat-v1", strict_protocols=True)
    async with client.ws_connect("/chat", protocols=("spry-chat-v1",)) as ws:
        assert ws.protocol == "spry-chat-v1"


async def test_non_get_upgrade_is_405_with_allow_get(
    serve: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client = await chat_client(serve, methods=("GET", "POST"))
    conn = await raw(client)
    reply = await conn.request(method="POST", headers={"Content-Length": "0"})
    assert (reply.status, reply.headers["allow"]) == (405, "GET")
    [warning] = spry_records(caplog, logging.WARNING)
    assert "POST /chat peer=127.0.0.1" in warning.getMessage()
    await conn.aclose()


async def test_upgrade_on_plain_request_is_426_upgrade_required(serve: ClientFactory) -> None:
    spry = Spry()

    @spry.route("/ws")
    def ws_only(event: Event) -> web.StreamResponse:
        return event.ws.upgrade(greet)

    client = await serve(spry)
    resp = await client.get("/ws")
    assert resp.status == 426
    assert resp.headers["Upgrade"] == "websocket"
    assert await resp.text() == "Upgrade Required"


async def test_http_1_0_upgrade_headers_are_ignored_so_upgrade_is_426(
    serve: ClientFactory,
) -> None:
    spry = Spry()

    @spry.route("/ws")
    def ws_only(event: Event) -> web.StreamResponse:
        return event.ws.upgrade(greet)

    client = await serve(spry)
    conn = await raw(client)
    reply = await conn.request("/ws", version="HTTP/1.0")
    assert reply.status == 426
    await conn.aclose()


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-WebSocket-Key": None},
        {"Sec-WebSocket-Key": "not-base64!"},
        {"Sec-WebSocket-Version": "99"},
    ],
    ids=["no-key", "bad-key", "bad-version"],
)
async def test_malformed_handshake_is_400_never_fallback_or_500(
    serve: ClientFactory, caplog: pytest.LogCaptureFixture, headers: dict[str, Any]
) -> None:
    client = await chat_client(serve)
    conn = await raw(client)
    reply = await conn.request(headers=headers)
    assert reply.status == 400
    assert b"Traceback" not in reply.body
    [warning] = spry_records(caplog, logging.WARNING)
    assert "handshake refused" in warning.getMessage()
    await conn.aclose()
    # The server still accepts a correct handshake.
    async with client.ws_connect("/chat") as ws:
        assert await ws.receive_str() == "protocol=None"


async def test_is_upgrade_request_reads_only_upgrade_and_connection(
    serve: ClientFactory,
) -> None:
    spry = Spry()

    @spry.route("/probe")
    def probe(event: Event) -> dict[str, Any]:
        return {"upgrade": event.ws.is_upgrade_request, "requested": event.ws.requested_protocols}

    client = await serve(spry)

    async def probe_with(headers: dict[str, str]) -> Any:
        return await (await client.get("/probe", headers=headers)).json()

    assert await probe_with({"Upgrade": "WebSocket", "Connection": "keep-alive, Upgrade"}) == {
        "upgrade": True,
        "requested": [],
    }
    assert (await probe_with({"Upgrade": "h2c", "Connection": "Upgrade"}))["upgrade"] is False
    assert (await probe_with({"Upgrade": "websocket"}))["upgrade"] is False
    assert (await probe_with({"Sec-WebSocket-Protocol": "a, b ,, c"}))["requested"] == [
        "a",
        "b",
        "c",
    ]


async def test_second_upgrade_on_one_event_is_a_clear_error(
    serve: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    spry = Spry()

    @spry.route("/twice")
    def twice(event: Event) -> web.StreamResponse:
        event.ws.upgrade(greet)
        return event.ws.upgrade(greet)

    client = await serve(spry)
    conn = await raw(client)
    reply = await conn.request("/twice")
    assert reply.status == 500
    [error] = spry_records(caplog, logging.ERROR)
    assert "already called" in str(error.exc_info[1] if error.exc_info else "")
    await conn.aclose()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"protocol": "a", "protocols": ["b"]}, "either protocol= or protocols="),
        ({"protocol": "bad name"}, "invalid WebSocket subprotocol"),
        ({"max_msg_size": -1}, "max_msg_size must be >= 0"),
    ],
)
async def test_invalid_upgrade_arguments_are_logged_500(
    serve: ClientFactory, caplog: pytest.LogCaptureFixture, kwargs: dict[str, Any], message: str
) -> None:
    client = await chat_client(serve, **kwargs)
    conn = await raw(client)
    assert (await conn.request()).status == 500
    [error] = spry_records(caplog, logging.ERROR)
    assert message in str(error.exc_info[1] if error.exc_info else "")
    await conn.aclose()


async def test_upgrade_for_another_event_is_refused(
    serve: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    spry = Spry()
    stash: list[web.StreamResponse] = []

    @spry.route("/stash")
    def stash_route(event: Event) -> web.StreamResponse:
        if not stash:
            stash.append(event.ws.upgrade(greet))
        return stash[0]

    client = await serve(spry)
    async with client.ws_connect("/stash") as ws:
        assert await ws.receive_str() == "protocol=None"
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/stash")
    assert refused.value.status == 500
    assert any("another request" in r.getMessage() for r in spry_records(caplog, logging.ERROR))


async def test_only_first_protocol_header_line_counts_like_aiohttp(
    serve: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client = await chat_client(serve, protocol="spry-chat-v1", strict_protocols=True)
    conn = await raw(client)
    conn.writer.write(
        b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Protocol: other\r\nSec-WebSocket-Protocol: spry-chat-v1\r\n\r\n"
    )
    head = await conn.reader.readuntil(b"\r\n\r\n")
    # Strict mode refuses: the selection aiohttp would make sees only "other".
    assert head.startswith(b"HTTP/1.1 400")
    [warning] = spry_records(caplog, logging.WARNING)
    assert "['other']" in warning.getMessage()
    await conn.aclose()


@pytest.mark.parametrize("version", ["8", "7", "12", ""])
async def test_versions_other_than_13_are_400_naming_13(
    serve: ClientFactory, caplog: pytest.LogCaptureFixture, version: str
) -> None:
    client = await chat_client(serve)
    conn = await raw(client)
    reply = await conn.request(headers={"Sec-WebSocket-Version": version})
    assert reply.status == 400
    assert reply.headers["sec-websocket-version"] == "13"
    [warning] = spry_records(caplog, logging.WARNING)
    assert f"unsupported Sec-WebSocket-Version {version!r}" in warning.getMessage()
    await conn.aclose()
