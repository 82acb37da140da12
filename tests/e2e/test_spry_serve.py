"""``spry serve``: the console script serves a project folder as a real process."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from websockets.asyncio.client import connect

from tests.support.polling import eventually
from tests.support.procs import (
    HOST,
    free_port,
    free_port_pair,
    log_tail,
    spawn_listening,
    stop_process,
    subprocess_env,
)

pytestmark = pytest.mark.e2e

SPRY = str(Path(sys.executable).parent / "spry")
WELCOME = "Connected to Spry WebSocket server! Send a message and I will echo it back."


@pytest.mark.timeout(60)
async def test_spry_serve_runs_the_tutorial_project(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    proc = spawn_listening([SPRY, "serve", "example_app", "--port", str(port)], port, log)
    try:
        base = f"http://{HOST}:{port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/") as resp:
                assert await resp.json() == {
                    "message": "hello from spry",
                    "runtime": "aiohttp",
                    "path": "/",
                }
            async with http.get(f"{base}/about") as resp:
                assert await resp.json() == {"page": "about", "method": "GET"}
            async with http.head(f"{base}/about") as resp:
                assert resp.status == 200
            async with http.post(f"{base}/about") as resp:
                assert resp.status == 405
            async with http.get(f"{base}/chat") as resp:
                body = await resp.json()
                assert body["message"] == "This endpoint supports WebSocket connections"
        async with connect(f"ws://{HOST}:{port}/chat", subprotocols=["spry-chat-v1"]) as ws:  # type: ignore[list-item]
            assert ws.subprotocol == "spry-chat-v1"
            assert await asyncio.wait_for(ws.recv(), 5) == WELCOME
            await ws.send("hello serve")
            assert await asyncio.wait_for(ws.recv(), 5) == "Echo: hello serve"
    finally:
        code = stop_process(proc, signal.SIGINT)
    assert code == 0, log_tail(log)


def test_spry_serve_takes_the_port_from_spry_config(tmp_path: Path) -> None:
    port = free_port()
    project = tmp_path / "site"
    (project / "routes").mkdir(parents=True)
    (project / "routes" / "index.get.py").write_text("def handler(event):\n    return 'hi'\n")
    (project / "spry_config.py").write_text(f"port = {port}\n")
    log = tmp_path / "serve.log"
    proc = spawn_listening([SPRY, "serve", str(project)], port, log)
    stop_process(proc, signal.SIGINT)


def test_spry_serve_refuses_a_broken_project_with_one_clear_line(tmp_path: Path) -> None:
    project = tmp_path / "broken"
    (project / "routes").mkdir(parents=True)
    (project / "routes" / "a.py").write_text("def handler(event):\n    return 1\n")
    (project / "routes" / "a").mkdir()
    (project / "routes" / "a" / "index.py").write_text("def handler(event):\n    return 2\n")
    done = subprocess.run(
        [SPRY, "serve", str(project), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=30,
        env=subprocess_env(),
    )
    assert done.returncode == 2
    assert "a.py" in done.stderr and "index.py" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.timeout(90)
async def test_spry_serve_reload_restarts_on_a_changed_route(tmp_path: Path) -> None:
    port = free_port_pair()
    project = tmp_path / "site"
    route = project / "routes" / "index.get.py"
    route.parent.mkdir(parents=True)
    route.write_text("def handler(event):\n    return 'before'\n")
    log = tmp_path / "reload.log"
    proc = spawn_listening(
        [SPRY, "serve", str(project), "--port", str(port), "--reload"], port, log, timeout=30
    )
    try:
        async with aiohttp.ClientSession() as http:

            async def says(text: str) -> bool:
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"http://{HOST}:{port}/") as resp:
                        return resp.status == 200 and await resp.text() == text
                return False

            await eventually(lambda: says("before"), 20, 0.2, what=lambda: log_tail(log))
            route.write_text("def handler(event):\n    return 'after'\n")
            await eventually(lambda: says("after"), 30, 0.2, what=lambda: log_tail(log))
    finally:
        stop_process(proc, signal.SIGINT)
