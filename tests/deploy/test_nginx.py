"""The example behind Debian's real nginx with ``deploy/nginx/aiohttp_spry.conf.template``."""

from __future__ import annotations

import asyncio
import signal

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.e2e.helpers import IO_TIMEOUT, PROTOCOL, WELCOME, recv, wait_for_log
from tests.support.nginxproc import NginxProcess
from tests.support.procs import HOST

from .conftest import BehindNginx

pytestmark = pytest.mark.e2e

#: The test client's own loopback address, so that the app's log can tell it from nginx's.
CLIENT = "127.0.0.5"


def through(nginx: NginxProcess, **kwargs: object) -> connect:
    options: dict[str, object] = {
        "open_timeout": IO_TIMEOUT,
        "close_timeout": IO_TIMEOUT,
        "proxy": None,
        "ping_interval": None,
        "local_addr": (CLIENT, 0),
    }
    options.update(kwargs)
    return connect(f"ws://{HOST}:{nginx.port}/chat", **options)  # type: ignore[arg-type]


async def echo(ws: ClientConnection, text: str) -> None:
    await ws.send(text)
    assert await recv(ws) == f"Echo: {text}"


async def test_echo_and_subprotocol_through_nginx_with_the_client_address_in_the_log(
    behind_nginx: BehindNginx,
) -> None:
    app, nginx = behind_nginx()
    async with through(nginx, subprotocols=[PROTOCOL]) as ws:
        assert ws.subprotocol == PROTOCOL  # negotiated by the app, passed through by nginx
        assert await recv(ws) == WELCOME
        await echo(ws, "through nginx")
    # The app saw the client (X-Forwarded-For, believed from 127.0.0.1 only), not nginx.
    log = await wait_for_log(app, f"WebSocket route called: GET /chat peer={CLIENT}")
    assert "peer=127.0.0.1" not in log
    # Plain HTTP on the same route, through the proxy.
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://{HOST}:{nginx.port}/chat") as response:
            assert response.status == 200
            assert (await response.json())["upgradeRequest"] is False
        # /metrics is for Prometheus on the app's own port, not the public proxy.
        async with http.get(f"http://{HOST}:{nginx.port}/metrics") as response:
            assert response.status == 404
        async with http.get(f"http://{HOST}:{app.port}/metrics") as response:
            assert response.status == 200
            assert "aiohttp_spry_sessions" in await response.text()


async def test_a_foreign_origin_is_refused_and_the_same_origin_accepted_through_nginx(
    behind_nginx: BehindNginx,
) -> None:
    app, nginx = behind_nginx()
    with pytest.raises(InvalidStatus) as refused:
        async with through(nginx, origin="https://evil.example"):
            pass
    assert refused.value.response.status_code == 403
    await wait_for_log(app, f"origin 'https://evil.example' is not 127.0.0.1:{nginx.port}")
    # The page's own origin is the Host nginx passed on: accepted.
    async with through(nginx, origin=f"http://{HOST}:{nginx.port}") as ws:
        assert await recv(ws) == WELCOME


async def test_a_forged_forwarded_header_from_outside_the_proxy_is_refused(
    behind_nginx: BehindNginx,
) -> None:
    app, _ = behind_nginx()
    # Straight to the app from an address that is not the proxy, claiming another client.
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.3", 0))
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        http.get(
            f"http://{HOST}:{app.port}/chat", headers={"X-Forwarded-For": "203.0.113.9"}
        ) as response,
    ):
        assert response.status == 400
    assert "peer=203.0.113.9" not in app.log()


async def test_sigterm_closes_sessions_with_1001_through_nginx(behind_nginx: BehindNginx) -> None:
    app, nginx = behind_nginx()
    async with through(nginx) as ws:
        assert await recv(ws) == WELCOME
        app.proc.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed):
            await recv(ws)
        assert ws.close_code == 1001
        assert ws.close_reason == "server shutting down"


async def test_nginx_cuts_a_client_that_trickles_its_headers(behind_nginx: BehindNginx) -> None:
    app, nginx = behind_nginx(directives={"client_header_timeout": "1s"})
    reader, writer = await asyncio.open_connection(HOST, nginx.port, local_addr=(CLIENT, 0))
    writer.write(b"GET /chat HTTP/1.1\r\nHost: x\r\n")
    closed = False
    for _ in range(100):  # one byte every 0.1 s, at most 10 s: nginx must cut it first
        try:
            writer.write(b"X")
            await writer.drain()
            data = await asyncio.wait_for(reader.read(1024), 0.1)
        except asyncio.TimeoutError:
            continue
        except ConnectionError:
            closed = True
            break
        if data == b"" or data.startswith(b"HTTP/1.1 408"):
            closed = True
            break
    writer.close()
    assert closed, "nginx kept a header-trickling client for 10 s with client_header_timeout 1s"
    assert "client timed out" in nginx.errors()
    assert "WebSocket route called" not in app.log()  # it never reached the app


@pytest.mark.parametrize("heartbeat", [True, False], ids=["heartbeat", "no-heartbeat"])
async def test_a_heartbeat_keeps_a_quiet_session_past_proxy_read_timeout(
    behind_nginx: BehindNginx, heartbeat: bool
) -> None:
    env = {"SPRY_HEARTBEAT": "0.5"} if heartbeat else {}
    _, nginx = behind_nginx(env=env, directives={"proxy_read_timeout": "2s"})
    async with through(nginx) as ws:
        assert await recv(ws) == WELCOME
        await asyncio.sleep(3.5)  # quiet for longer than proxy_read_timeout
        if heartbeat:
            await echo(ws, "still here")  # the app's pings kept nginx reading
        else:
            # The control: without pings nginx ends the quiet session.
            with pytest.raises(ConnectionClosed):
                await echo(ws, "still here?")
