"""An echo server for the conformance tests, served by aiohttp's test server on 127.0.0.1."""

from __future__ import annotations

import attrs
import pytest
from aiohttp import web

from aiohttp_spry import (
    BinaryDataReceived,
    CloseReceived,
    Event,
    Spry,
    TextDataReceived,
    WebSocket,
)

from ..conftest import ClientFactory

#: ``max_msg_size`` of the ``/small`` route, for the 1009 cases.
SMALL_LIMIT = 1024


async def echo(ws: WebSocket) -> None:
    """Text comes back as text, binary as binary, unchanged."""
    async for message in ws.events:
        match message:
            case TextDataReceived(text=text):
                await ws.send_text(text)
            case BinaryDataReceived(data=data):
                await ws.send_bytes(data)
            case CloseReceived():
                pass


def echo_spry() -> Spry:
    """``/echo`` (default settings, JSON for plain HTTP) and ``/small`` (``max_msg_size=1024``)."""
    spry = Spry()

    @spry.route("/echo")
    def echo_route(event: Event) -> web.StreamResponse | dict[str, str]:
        if not event.ws.is_upgrade_request:
            return {"message": "WebSocket echo"}
        return event.ws.upgrade(echo)

    @spry.route("/small", max_msg_size=SMALL_LIMIT)
    def small_route(event: Event) -> web.StreamResponse:
        return event.ws.upgrade(echo)

    return spry


@attrs.frozen
class EchoServer:
    port: int
    app: web.Application


@pytest.fixture
async def server(serve: ClientFactory) -> EchoServer:
    client = await serve(echo_spry())
    assert client.port is not None
    return EchoServer(client.port, client.app)
