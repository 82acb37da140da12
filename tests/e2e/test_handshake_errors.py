"""Refused and malformed handshakes: 4xx answers, WARNING logs, never a 500 or a traceback."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.support.procs import HOST
from tests.support.rawws import RawResponse, raw_exchange
from tests.support.wire import build_request

from .helpers import (
    PROTOCOL,
    ServerProcess,
    assert_server_still_serves,
    handshake_headers,
    log_lines,
    wait_for_log,
)

pytestmark = pytest.mark.e2e


def assert_no_traceback(response: RawResponse) -> None:
    assert "Traceback" not in response.text, response.text


async def test_post_with_upgrade_headers_is_405_allowing_only_get(server: ServerProcess) -> None:
    headers = {**handshake_headers(server.port), "Content-Length": "0"}
    response = await raw_exchange(server.port, build_request("POST", "/chat", headers))

    assert response.status_line.startswith("HTTP/1.1 405 ")
    # aiohttp's 405 for the GET route (which answers HEAD too, as in Spry).
    assert [set(v.split(",")) for v in response.header_values("Allow")] == [{"GET", "HEAD"}]
    assert_no_traceback(response)
    await assert_server_still_serves(server)


async def test_upgrade_without_key_is_400_with_warning_and_server_keeps_serving(
    server: ServerProcess,
) -> None:
    headers = handshake_headers(server.port, Sec_WebSocket_Key=None)
    response = await raw_exchange(server.port, build_request("GET", "/chat", headers))

    assert response.status_line.startswith("HTTP/1.1 400 ")
    assert_no_traceback(response)
    log = await wait_for_log(server, "WebSocket handshake refused")
    warnings = log_lines(log, "WARNING", "aiohttp_spry")
    assert any("WebSocket handshake refused" in line for line in warnings), log
    await assert_server_still_serves(server)


@pytest.mark.parametrize("version", ["99", "12", "not-a-number"])
async def test_upgrade_with_unsupported_version_is_400_and_server_keeps_serving(
    server: ServerProcess, version: str
) -> None:
    headers = handshake_headers(server.port, Sec_WebSocket_Version=version)
    response = await raw_exchange(server.port, build_request("GET", "/chat", headers))

    assert response.status_line.startswith("HTTP/1.1 400 ")
    assert_no_traceback(response)
    log = await wait_for_log(server, "WebSocket handshake refused")
    assert log_lines(log, "WARNING", "aiohttp_spry"), log
    await assert_server_still_serves(server)


async def test_upgrade_with_malformed_key_is_400(server: ServerProcess) -> None:
    headers = handshake_headers(server.port, Sec_WebSocket_Key="not-16-bytes")
    response = await raw_exchange(server.port, build_request("GET", "/chat", headers))

    assert response.status == 400
    assert_no_traceback(response)
    await assert_server_still_serves(server)


@dataclass(frozen=True)
class OddRequest:
    request: bytes
    head: bool = False
    #: Whether aiohttp's parser accepts it, so that it reaches the Spry route.
    reaches_route: bool = True


def _odd_requests(port: int) -> dict[str, OddRequest]:
    host = {"Host": f"{HOST}:{port}"}

    def upgrade(method: str = "GET", **overrides: str | None) -> bytes:
        headers = handshake_headers(port, **overrides)
        if method != "GET":
            headers["Content-Length"] = "0"
        return build_request(method, "/chat", headers)

    return {
        "plain-get": OddRequest(build_request("GET", "/chat", host)),
        "head": OddRequest(build_request("HEAD", "/chat", host), head=True),
        "put-upgrade": OddRequest(upgrade("PUT")),
        "no-key": OddRequest(upgrade(Sec_WebSocket_Key=None)),
        "empty-key": OddRequest(upgrade(Sec_WebSocket_Key="")),
        "no-version": OddRequest(upgrade(Sec_WebSocket_Version=None)),
        "version-99": OddRequest(upgrade(Sec_WebSocket_Version="99")),
        "empty-protocol-list": OddRequest(upgrade(Sec_WebSocket_Protocol=",, ,")),
        "non-token-protocols": OddRequest(upgrade(Sec_WebSocket_Protocol='a b, (x), "q"')),
        "bare-cr-in-header": OddRequest(
            upgrade(Sec_WebSocket_Protocol="x\rInjected: 1"), reaches_route=False
        ),
        "unknown-path": OddRequest(build_request("GET", "/nope", host)),
        "garbage-request-line": OddRequest(b"GARBAGE\r\n\r\n", reaches_route=False),
        "bad-http-version": OddRequest(
            build_request("GET", "/chat", host, version="HTTP/9.9"), reaches_route=False
        ),
    }


ODD_REQUEST_NAMES = list(_odd_requests(0))


@pytest.mark.parametrize("name", ODD_REQUEST_NAMES)
async def test_odd_request_gets_non_5xx_answer_without_traceback(
    server: ServerProcess, name: str
) -> None:
    odd = _odd_requests(server.port)[name]
    response = await raw_exchange(server.port, odd.request, head=odd.head)

    assert response.status < 500, (response.status_line, response.text)
    assert_no_traceback(response)
    if odd.reaches_route:
        # Requests aiohttp's parser accepts reach the Spry route, which must
        # neither crash nor log an error for them. (aiohttp itself logs parser
        # errors with a traceback; that is not the extension's doing.)
        log = server.log()
        assert "Traceback" not in log, log
        assert not log_lines(log, "ERROR", "aiohttp_spry"), log
    await assert_server_still_serves(server)


async def test_refusal_warning_names_offered_and_spoken_protocols(server: ServerProcess) -> None:
    headers = handshake_headers(server.port, Sec_WebSocket_Key=None, Sec_WebSocket_Protocol="other")
    response = await raw_exchange(server.port, build_request("GET", "/chat", headers))

    assert response.status == 400
    log = await wait_for_log(server, "WebSocket handshake refused")
    refusals = [
        line
        for line in log_lines(log, "WARNING", "aiohttp_spry")
        if "WebSocket handshake refused" in line
    ]
    assert refusals, log
    assert "['other']" in refusals[0]
    assert f"['{PROTOCOL}']" in refusals[0]
