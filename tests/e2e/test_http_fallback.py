"""Plain HTTP on the WebSocket route: the JSON fallback for clients that do not upgrade."""

from __future__ import annotations

import json

import pytest

from tests.support.procs import HOST
from tests.support.rawws import raw_exchange
from tests.support.wire import build_request

from .helpers import ServerProcess, handshake_headers

pytestmark = pytest.mark.e2e

MESSAGE = "This endpoint supports WebSocket connections"


async def test_plain_get_returns_json_fallback_with_ws_hint_for_own_host(
    server: ServerProcess,
) -> None:
    request = build_request("GET", "/chat", {"Host": f"{HOST}:{server.port}"})
    response = await raw_exchange(server.port, request)

    assert response.status == 200
    assert response.header("Content-Type", "").startswith("application/json")
    payload = json.loads(response.body)
    assert payload["message"] == MESSAGE
    assert f"ws://{HOST}:{server.port}/chat" in payload["hint"]
    assert payload["supported"] is True
    assert payload["upgradeRequest"] is False
    assert "Traceback" not in response.text


async def test_fallback_hint_echoes_the_requests_host_header(server: ServerProcess) -> None:
    request = build_request("GET", "/chat", {"Host": "chat.example.test:8443"})
    response = await raw_exchange(server.port, request)

    assert response.status == 200
    assert "ws://chat.example.test:8443/chat" in json.loads(response.body)["hint"]


async def test_upgrade_header_without_connection_upgrade_gets_fallback(
    server: ServerProcess,
) -> None:
    headers = handshake_headers(server.port, Connection="keep-alive")
    response = await raw_exchange(server.port, build_request("GET", "/chat", headers))

    assert response.status == 200
    payload = json.loads(response.body)
    assert payload["supported"] is True
    assert payload["upgradeRequest"] is False


async def test_http10_upgrade_request_gets_fallback_as_upgrade_is_ignored(
    server: ServerProcess,
) -> None:
    # RFC 7230 §6.7: Upgrade is ignored on HTTP/1.0, so this is a plain request.
    request = build_request("GET", "/chat", handshake_headers(server.port), version="HTTP/1.0")
    response = await raw_exchange(server.port, request)

    assert response.status == 200
    payload = json.loads(response.body)
    assert payload["supported"] is True
    assert payload["upgradeRequest"] is False
    log = server.log()
    assert "WebSocket upgrade request: False" in log
    assert "Returning HTTP fallback" in log
