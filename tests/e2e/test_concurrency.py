"""Many clients at once: every client gets its own echoes, in order."""

from __future__ import annotations

import asyncio

import pytest

from .helpers import ServerProcess, expect_welcome, recv, ws_connect

pytestmark = pytest.mark.e2e

CLIENTS = 100
MESSAGES = 20


@pytest.mark.timeout(60)
async def test_hundred_concurrent_clients_each_get_their_own_echoes_in_order(
    server: ServerProcess,
) -> None:
    async def client(client_id: int) -> list[str | bytes]:
        async with ws_connect(server) as ws:
            await expect_welcome(ws)
            # Pipeline all messages before reading, so ordering is really tested.
            for n in range(MESSAGES):
                await ws.send(f"{client_id}-{n}")
            return [await recv(ws) for _ in range(MESSAGES)]

    results = await asyncio.wait_for(
        asyncio.gather(*(client(client_id) for client_id in range(CLIENTS))), 45
    )

    for client_id, received in enumerate(results):
        assert received == [f"Echo: {client_id}-{n}" for n in range(MESSAGES)]
    assert server.proc.poll() is None
