"""Fixtures for the end-to-end suite: the real ``python -m example_app`` in a subprocess."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import HOST, ServerProcess, free_port, subprocess_env

#: The repository root (``example_app`` is importable from here).
REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 15.0
SHUTDOWN_TIMEOUT = 10.0


def _wait_until_listening(server: ServerProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            pytest.fail(
                f"example_app exited with {server.proc.returncode} before listening:\n"
                f"{server.log()}"
            )
        try:
            with socket.create_connection((HOST, server.port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(
        f"example_app did not listen on {HOST}:{server.port} within {timeout}s:\n{server.log()}"
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT, then SIGKILL after SHUTDOWN_TIMEOUT; only the process this suite started."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=SHUTDOWN_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=SHUTDOWN_TIMEOUT)


@pytest.fixture
def repo_root() -> Path:
    """The repository root, the working directory for every child process."""
    return REPO_ROOT


@pytest.fixture
def server_args() -> list[str]:
    """Extra ``python -m example_app`` arguments; a test module may override this fixture."""
    return []


@pytest.fixture
def server(tmp_path: Path, server_args: list[str]) -> Iterator[ServerProcess]:
    """The example server on a free loopback port, stopped (SIGINT, then kill) afterwards."""
    port = free_port()
    log_path = tmp_path / "server.log"
    log_file = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "example_app", "--host", HOST, "--port", str(port), *server_args],
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env=subprocess_env(),
    )
    running = ServerProcess(port=port, proc=proc, log_path=log_path)
    try:
        _wait_until_listening(running, STARTUP_TIMEOUT)
        yield running
    finally:
        try:
            _stop(proc)
        finally:
            log_file.close()
