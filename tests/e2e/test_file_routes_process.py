"""``python -m example_app --file-routes`` serves the same chat from routes/, plus /private."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.support.procs import REPO_ROOT, subprocess_env
from tests.support.rawws import raw_exchange
from tests.support.wire import build_request

from .helpers import IO_TIMEOUT, ServerProcess, expect_welcome, recv, ws_connect

pytestmark = pytest.mark.e2e


@pytest.fixture
def server_args() -> list[str]:
    return ["--file-routes"]


async def test_file_routes_chat_has_the_tutorial_contract(server: ServerProcess) -> None:
    host = {"Host": f"127.0.0.1:{server.port}"}
    fallback = await raw_exchange(server.port, build_request("GET", "/chat", host))
    assert fallback.status == 200
    assert json.loads(fallback.body)["upgradeRequest"] is False
    async with ws_connect(server, subprotocols=["spry-chat-v1"]) as ws:
        assert ws.subprotocol == "spry-chat-v1"
        await expect_welcome(ws)
        await ws.send("Hello Spry!")
        assert await recv(ws) == "Echo: Hello Spry!"


async def test_private_chat_needs_a_token_and_answers_plain_requests_kindly(
    server: ServerProcess,
) -> None:
    host = {"Host": f"127.0.0.1:{server.port}"}
    plain = await raw_exchange(server.port, build_request("GET", "/private/chat", host))
    assert plain.status == 200
    assert json.loads(plain.body)["message"] == "This private endpoint only speaks WebSocket"

    url = f"ws://127.0.0.1:{server.port}/private/chat"
    options = {"open_timeout": IO_TIMEOUT, "close_timeout": IO_TIMEOUT, "proxy": None}
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, **options):  # type: ignore[arg-type]
            pass
    assert refused.value.response.status_code == 401

    async with connect(f"{url}?token=let-me-in", **options) as ws:  # type: ignore[arg-type]
        assert await recv(ws) == "Connected to the private Spry chat."
        await ws.send("psst")
        assert await recv(ws) == "Private echo: psst"


@pytest.mark.timeout(60)
def test_example_client_talks_to_the_private_echo_route(server: ServerProcess) -> None:
    url = f"ws://127.0.0.1:{server.port}/private/chat?token=let-me-in"
    result = subprocess.run(
        [sys.executable, "-m", "example_app.client", url],
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=subprocess_env(),
        timeout=30.0,
        check=False,
    )
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "Received: Private echo: Hello Spry!" in result.stdout
    assert f"Serving on http://127.0.0.1:{server.port} (file routes)" in server.log()
