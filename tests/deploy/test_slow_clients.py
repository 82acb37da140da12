"""Slow and idle clients are cut after the keep-alive bound under every way the README runs
the example: ``python -m example_app``, ``adev runserver``, the gunicorn recipe."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.helpers import (
    ServerProcess,
    assert_server_still_serves,
    start_example,
    stop_example,
)
from tests.support.optional import require_tool
from tests.support.procs import HOST, REPO_ROOT, free_port_pair, stop_process, subprocess_env

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
#: Short in tests; the example's default is 15 s.
KEEPALIVE = "1"
EACH = 20  # trickling and silent clients each
#: A bound, not a timing: with a 1 s keep-alive every slow client must be gone long before.
CUT_WITHIN = 15.0


def command(runner: str, port: int) -> list[str]:
    if runner == "python -m example_app":
        return [sys.executable, "-m", "example_app", "--host", HOST, "--port", str(port)]
    if runner == "adev runserver":
        require_tool("adev", (BIN / "adev").exists(), "pip install aiohttp-devtools")
        return [str(BIN / "adev"), "runserver", "example_app", "--port", str(port),
                "--no-livereload"]  # fmt: skip
    require_tool("gunicorn", (BIN / "gunicorn").exists(), "pip install gunicorn")
    return [
        str(BIN / "gunicorn"), "-c", str(REPO_ROOT / "deploy" / "gunicorn.conf.py"),
        "example_app.main:create_app", "--bind", f"{HOST}:{port}", "--workers", "1",
        "--no-control-socket",
    ]  # fmt: skip


@pytest.fixture(params=["python -m example_app", "adev runserver", "gunicorn recipe"])
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    port = free_port_pair()  # adev also serves an aux app on port + 1
    env = subprocess_env({"SPRY_KEEPALIVE_TIMEOUT": KEEPALIVE})
    running = start_example(
        tmp_path / "server.log", env=env, command=command(request.param, port), port=port
    )
    try:
        yield running
    finally:
        if request.param == "python -m example_app":
            stop_example(running)
        else:  # adev stops on SIGINT; gunicorn's graceful stop is SIGTERM (master, by PID)
            sig = signal.SIGINT if request.param == "adev runserver" else signal.SIGTERM
            stop_process(running.proc, sig, timeout=20.0)


async def trickle(port: int) -> bool:
    """Send a request's headers one byte every 0.2 s; True once the server hangs up."""
    reader, writer = await asyncio.open_connection(HOST, port)
    request = b"GET /chat HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 1000
    try:
        for index in range(int(CUT_WITHIN / 0.2)):
            writer.write(request[index : index + 1])
            try:
                await writer.drain()
                if await asyncio.wait_for(reader.read(1024), 0.2) == b"":
                    return True
            except asyncio.TimeoutError:
                continue
            except ConnectionError:
                return True
        return False
    finally:
        writer.close()


async def silent(port: int) -> bool:
    """Connect and send nothing; True once the server hangs up."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        return await asyncio.wait_for(reader.read(1024), CUT_WITHIN) == b""
    except asyncio.TimeoutError:
        return False
    except ConnectionError:
        return True
    finally:
        writer.close()


async def test_trickling_and_silent_clients_are_cut_and_others_served(
    server: ServerProcess,
) -> None:
    attackers = asyncio.gather(
        *(trickle(server.port) for _ in range(EACH)), *(silent(server.port) for _ in range(EACH))
    )
    await asyncio.sleep(0.2)
    await assert_server_still_serves(server)  # other clients are served meanwhile
    cut = await attackers
    assert all(cut), f"{cut.count(False)} of {len(cut)} slow clients still connected"
    await assert_server_still_serves(server)
