"""``adev runserver example_app`` serves the example, and stopping it closes sessions with 1001."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.support.polling import eventually
from tests.support.procs import free_port_pair

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
WELCOME = "Connected to Spry WebSocket server! Send a message and I will echo it back."


@pytest.fixture(
    params=[[], ["--app-factory", "create_file_routes_app"]], ids=["default", "file-routes"]
)
def adev_server(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    port = free_port_pair()
    log = tmp_path / "adev.log"
    adev = Path(sys.executable).parent / "adev"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(adev),
                "runserver",
                "example_app",
                "--port",
                str(port),
                "--no-livereload",
                *request.param,
            ],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc, port, log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


async def wait_until_serving(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    async with aiohttp.ClientSession() as http:

        async def serving() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"adev exited with {proc.returncode}:\n{log.read_text()}")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"http://127.0.0.1:{port}/chat") as resp:
                    return resp.status == 200
            return False

        await eventually(serving, 15.0, 0.1, what=lambda: f"adev serving /chat:\n{log.read_text()}")


@pytest.mark.timeout(60)
async def test_adev_runserver_serves_example_and_closes_sessions_with_1001_on_stop(
    adev_server: tuple[subprocess.Popen[bytes], int, Path],
) -> None:
    proc, port, log = adev_server
    await wait_until_serving(port, proc, log)
    async with connect(f"ws://127.0.0.1:{port}/chat", subprotocols=["spry-chat-v1"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "spry-chat-v1"
        assert await asyncio.wait_for(ws.recv(), 5) == WELCOME
        await ws.send("hello adev")
        assert await asyncio.wait_for(ws.recv(), 5) == "Echo: hello adev"
        proc.send_signal(signal.SIGINT)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None, log.read_text()
    assert closed.value.rcvd.code == 1001
    assert await asyncio.to_thread(proc.wait, 15) == 0
