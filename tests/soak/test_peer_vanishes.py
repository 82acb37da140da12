"""A client that vanishes mid-handshake or mid-conversation is not a server error.

The README: "session sends after the peer left: DEBUG log, no 1011", and a
peer that vanishes just ends the session. The churn test found two ways a
vanished peer used to be logged at ERROR with a traceback, once per connection
(so any client could flood the error log): a client leaving before the 101 was
written, and a session sending to a peer whose transport was already closing.
Both are reproduced here, many times over.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.helpers import ServerProcess, assert_server_still_serves
from tests.support.wire import TEXT, client_frame

from .probes import RawClient, log_figures, settle, snapshot

pytestmark = pytest.mark.e2e

ATTEMPTS = 50
BURST = 5
TIMEOUT = 10.0


async def server_state_after(server: ServerProcess) -> dict[str, int]:
    """Fail outright unless the server is alive, back to 0 sessions and still serving."""
    baseline = await snapshot(server)
    after, _ = await settle(server, baseline)
    if server.proc.poll() is not None or after.sessions != 0:
        pytest.fail(f"server gone or sessions left open: {after}\n{server.log()[-3000:]}")
    try:
        await assert_server_still_serves(server)
    except Exception as error:
        pytest.fail(f"server no longer serves: {error!r}")
    return log_figures(await asyncio.to_thread(server.log))


@pytest.mark.timeout(60)
async def test_peer_vanishing_before_the_101_is_not_logged_as_an_error(
    server: ServerProcess,
) -> None:
    for _ in range(ATTEMPTS):
        client = await RawClient.connect(server.port)
        try:
            await asyncio.wait_for(client.send_handshake(server.port), TIMEOUT)
        finally:
            client.abort()
    logged = await server_state_after(server)
    print(f"\n{ATTEMPTS} handshakes aborted before the 101: {logged}")
    assert logged["ERROR"] == 0, (
        f"{logged['ERROR_route_handler']} of {ATTEMPTS} handshakes aborted before the 101 "
        f"were logged as 'Unhandled exception in route handler', {logged}"
    )
    assert logged["tracebacks"] == 0, logged


@pytest.mark.timeout(60)
@pytest.mark.parametrize("rst", [True, False], ids=["RST", "FIN"])
async def test_session_sending_after_the_peer_vanished_is_not_logged_as_an_error(
    server: ServerProcess, rst: bool
) -> None:
    for attempt in range(ATTEMPTS):
        client = await RawClient.connect(server.port, rst=rst)
        try:
            await asyncio.wait_for(client.send_handshake(server.port), TIMEOUT)
            await asyncio.wait_for(client.read_101(), TIMEOUT)
            await asyncio.wait_for(client.read_welcome(), TIMEOUT)
            burst = b"".join(client_frame(TEXT, f"{attempt}-{n}".encode()) for n in range(BURST))
            await asyncio.wait_for(client.send(burst), TIMEOUT)
        finally:
            client.abort()
    logged = await server_state_after(server)
    how = "RST" if rst else "FIN"
    print(f"\n{ATTEMPTS} sessions aborted ({how}) after a burst of {BURST}: {logged}")
    assert logged["ERROR"] == 0, (
        f"{logged['ERROR_session_1011']} of {ATTEMPTS} sessions whose peer vanished were "
        f"logged as 'Unhandled exception in WebSocket session, closing with 1011', {logged}"
    )
    assert logged["tracebacks"] == 0, logged
