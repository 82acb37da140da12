"""Fixtures for the end-to-end suite: the real ``python -m example_app`` in a subprocess."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.procs import REPO_ROOT

from .helpers import ServerProcess, start_example, stop_example


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
    running = start_example(tmp_path / "server.log", server_args)
    try:
        yield running
    finally:
        stop_example(running)
