"""What already held before this issue, kept: a deflate bomb and a flood of unread pings
cost the real ``python -m example_app`` process almost no memory, and it keeps serving."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.helpers import ServerProcess, assert_server_still_serves, start_example, stop_example
from tests.support.procs import HOST
from tests.support.rawws import RawWebSocket
from tests.support.wire import BINARY, CLOSE, PING, client_frame

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    running = start_example(tmp_path / "server.log")
    try:
        yield running
    finally:
        stop_example(running)


def rss(server: ServerProcess) -> int:
    """The server's resident set size in bytes (/proc/PID/status VmRSS)."""
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def warm_up(server: ServerProcess) -> int:
    """One ordinary session first, so the rise measured is the attack's, not first use."""
    await assert_server_still_serves(server)
    await asyncio.sleep(0.2)
    return rss(server)


async def test_a_deflate_bomb_is_closed_with_1009_and_costs_under_9_mib(
    server: ServerProcess,
) -> None:
    before = await warm_up(server)
    conn = await RawWebSocket.connect(HOST, server.port)
    reply = await conn.request("/chat", headers={"Sec-WebSocket-Extensions": "permessage-deflate"})
    assert reply.status == 101 and "permessage-deflate" in reply.headers.get(
        "sec-websocket-extensions", ""
    )
    await conn.read_frame()  # the welcome
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = compressor.compress(bytes(64 * MiB)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert len(bomb) < 100_000  # 64 MiB from about 65 KB
    await conn.send(client_frame(BINARY, bomb[:-4], rsv=0b100))  # RSV1: compressed
    close = await conn.read_until_close()
    assert close.opcode == CLOSE and close.close_code == 1009
    rise = rss(server) - before
    print(f"\ndeflate bomb: RSS rise {rise / MiB:.2f} MiB")
    assert rise < 9 * MiB, f"RSS rose by {rise / MiB:.1f} MiB"
    await conn.aclose()
    await assert_server_still_serves(server)


async def test_a_million_unread_pings_cost_under_2_mib(server: ServerProcess) -> None:
    before = await warm_up(server)
    conn = await RawWebSocket.connect(HOST, server.port)
    assert (await conn.request("/chat")).status == 101
    batch = client_frame(PING, b"") * 10_000
    sent = 0
    try:
        for _ in range(100):  # 1,000,000 pings; the pongs are never read
            conn.writer.write(batch)
            await asyncio.wait_for(conn.writer.drain(), 5.0)
            sent += 10_000
    except asyncio.TimeoutError:
        pass  # the server stopped reading us: its buffers are full, which is the bound
    await asyncio.sleep(0.5)
    rise = rss(server) - before
    print(f"\n{sent} unread pings: RSS rise {rise / MiB:.2f} MiB")
    assert sent >= 10_000
    assert rise < 2 * MiB, f"RSS rose by {rise / MiB:.1f} MiB after {sent} unread pings"
    await conn.aclose()
    await assert_server_still_serves(server)
