"""Editing the app under ``adev runserver`` closes open sessions with 1001 and serves the new code.

The example is copied to ``tmp_path`` and adev runs there, so the edit touches
only the copy; ``aiohttp_spry`` still comes from the venv's editable install.
The new welcome text after the edit proves that ``example_app`` was the copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from tests.e2e.helpers import IO_TIMEOUT, PROTOCOL, WELCOME
from tests.support.polling import eventually
from tests.support.procs import HOST, free_port_pair, subprocess_env
from tests.support.rawws import raw_exchange
from tests.support.wire import build_request

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
ADEV = Path(sys.executable).parent / "adev"
NEW_WELCOME = WELCOME + " (reloaded)"
STARTUP_TIMEOUT = 20.0
CLOSE_TIMEOUT = 10.0
RELOAD_TIMEOUT = 20.0
EXIT_TIMEOUT = 15.0


def adev_env() -> dict[str, str]:
    """No PYTHONPATH (nothing but the copy may provide ``example_app``), no bytecode files
    written into the watched copy."""
    env = {k: v for k, v in subprocess_env().items() if k != "PYTHONPATH"}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


@dataclass(frozen=True)
class Proc:
    """A process identified by PID and start time, so a reused PID is not mistaken for it."""

    pid: int
    start_time: str

    @classmethod
    def of(cls, pid: int) -> Proc | None:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            return None
        return cls(pid, stat.rsplit(")", 1)[1].split()[19])

    def alive(self) -> bool:
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            return False
        fields = stat.rsplit(")", 1)[1].split()
        return fields[19] == self.start_time and fields[0] != "Z"


def children(pid: int) -> list[Proc]:
    """The live child processes of ``pid`` (adev's dev server is one), from ``/proc/*/stat``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(Proc(int(stat.parent.name), fields[19]))
    return found


def dev_server_of(adev_pid: int) -> Proc | None:
    """adev's dev server: the child whose command line runs multiprocessing's spawn."""
    for proc in children(adev_pid):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
            if b"multiprocessing.spawn" in cmdline:
                return proc
    return None


@dataclass
class Adev:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    app_dir: Path

    def log(self) -> str:
        return self.log_path.read_bytes().decode("utf-8", errors="replace")


@pytest.fixture
def adev(tmp_path: Path) -> Iterator[Adev]:
    """``adev runserver example_app`` on a copy of the example, cwd=tmp_path."""
    app_dir = tmp_path / "example_app"
    shutil.copytree(
        REPO_ROOT / "example_app", app_dir, ignore=shutil.ignore_patterns("__pycache__")
    )
    port = free_port_pair()
    log_path = tmp_path / "adev.log"
    started: list[Proc] = []
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [str(ADEV), "runserver", "example_app", "--port", str(port), "--no-livereload"],
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=adev_env(),
        )
    running = Adev(proc, port, log_path, app_dir)
    try:
        yield running
    finally:
        # Remember adev's dev server (if any) before stopping adev, to check it went too.
        started.extend(children(proc.pid) if proc.poll() is None else [])
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for child in started:
            if child.alive():  # adev left it behind: stop it, by PID, so nothing leaks
                os.kill(child.pid, signal.SIGKILL)


async def wait_until_serving(adev: Adev) -> None:
    """Poll (bounded) until ``GET /chat`` answers 200."""
    request = build_request("GET", "/chat", {"Host": f"{HOST}:{adev.port}", "Connection": "close"})

    async def serving() -> bool:
        if adev.proc.poll() is not None:
            pytest.fail(f"adev exited with {adev.proc.returncode}:\n{adev.log()}")
        with contextlib.suppress(OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            return (await raw_exchange(adev.port, request, timeout=2)).status == 200
        return False

    await eventually(
        serving, STARTUP_TIMEOUT, 0.1, what=lambda: f"adev serving /chat:\n{adev.log()}"
    )


def chat_client(port: int) -> connect:
    return connect(
        f"ws://{HOST}:{port}/chat",
        subprotocols=[PROTOCOL],  # type: ignore[list-item]
        open_timeout=IO_TIMEOUT,
        close_timeout=IO_TIMEOUT,
        proxy=None,
        ping_interval=None,
    )


async def reconnect(adev: Adev) -> tuple[ClientConnection, str | bytes, int]:
    """Connect (retrying, bounded) once the reloaded server accepts; return the first message.

    Until the new dev server listens, connections are refused, or the old one
    (closing) answers 503; both are retried. Returns the client, its first
    message and the number of attempts.
    """
    attempts = 0

    async def connected() -> ClientConnection | None:
        nonlocal attempts
        attempts += 1
        with contextlib.suppress(OSError, asyncio.TimeoutError, InvalidStatus, InvalidHandshake):
            return await chat_client(adev.port)
        return None

    ws = await eventually(
        connected, RELOAD_TIMEOUT, 0.1, what="the reloaded dev server accepting a WebSocket"
    )
    try:
        return ws, await asyncio.wait_for(ws.recv(), IO_TIMEOUT), attempts
    except BaseException:
        await ws.close()
        raise


@pytest.mark.timeout(90)
async def test_editing_the_app_closes_sessions_with_1001_and_serves_the_new_code(
    adev: Adev, tmp_path: Path
) -> None:
    # Resolve the imports as adev does: no script dir or cwd first (-I; PYTHONPATH is
    # unset anyway), then sys.path.append(root).
    probe = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            "import sys, json; sys.path.append('.'); import aiohttp_spry, example_app; "
            "print(json.dumps([aiohttp_spry.__file__, example_app.__file__]))",
        ],
        cwd=tmp_path,
        env=adev_env(),
        capture_output=True,
        timeout=30,
        check=True,
    )
    spry_file, app_file = json.loads(probe.stdout)
    assert Path(spry_file) == REPO_ROOT / "aiohttp_spry" / "__init__.py"
    assert Path(app_file) == adev.app_dir / "__init__.py"

    await wait_until_serving(adev)
    first_server = dev_server_of(adev.proc.pid)
    assert first_server is not None, adev.log()
    figures: dict[str, object] = {"port": adev.port, "first_dev_server_pid": first_server.pid}

    async with chat_client(adev.port) as ws:
        assert ws.subprotocol == PROTOCOL
        assert await asyncio.wait_for(ws.recv(), IO_TIMEOUT) == WELCOME
        await ws.send("before the edit")
        assert await asyncio.wait_for(ws.recv(), IO_TIMEOUT) == "Echo: before the edit"

        chat_py = adev.app_dir / "chat.py"
        source = chat_py.read_text()
        old_line = f'WELCOME = "{WELCOME}"'
        assert source.count(old_line) == 1, "chat.py no longer defines WELCOME on one line"
        chat_py.write_text(source.replace(old_line, f'WELCOME = "{NEW_WELCOME}"'))
        edited = time.monotonic()

        try:
            message = await asyncio.wait_for(ws.recv(), CLOSE_TIMEOUT)
        except ConnectionClosed as error:
            closed = error
        else:
            pytest.fail(f"expected the reload to close the session, got {message!r}")
        figures["close_after_edit_s"] = round(time.monotonic() - edited, 2)
    assert closed.rcvd is not None, f"no close frame from the server: {closed!r}\n{adev.log()}"
    figures["close_code"] = closed.rcvd.code
    figures["close_reason"] = closed.rcvd.reason
    assert closed.rcvd.code in (1001, 1012), figures

    ws, first_message, attempts = await reconnect(adev)
    async with ws:
        figures["reconnect_after_edit_s"] = round(time.monotonic() - edited, 2)
        figures["reconnect_attempts"] = attempts
        assert first_message == NEW_WELCOME, (first_message, figures, adev.log())
        await ws.send("after the edit")
        assert await asyncio.wait_for(ws.recv(), IO_TIMEOUT) == "Echo: after the edit"
    second_server = dev_server_of(adev.proc.pid)
    assert second_server is not None, adev.log()
    assert second_server != first_server, "the dev server process was not restarted"
    assert not first_server.alive(), "the old dev server is still running"
    figures["second_dev_server_pid"] = second_server.pid

    adev.proc.send_signal(signal.SIGINT)
    stopping = time.monotonic()
    returncode = await asyncio.to_thread(adev.proc.wait, EXIT_TIMEOUT)
    figures["adev_exit_s"] = round(time.monotonic() - stopping, 2)
    figures["adev_returncode"] = returncode
    print(f"\nadev reload figures: {json.dumps(figures)}")
    assert returncode == 0, adev.log()
    # adev has joined it already; allow 5 s for /proc to catch up.
    await eventually(
        lambda: not second_server.alive(), 5.0, 0.05, what="the dev server gone after adev"
    )
    assert not second_server.alive(), "adev exited but left its dev server running"
