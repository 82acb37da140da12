"""Fixtures for the deployment suite: the example behind a real nginx, gunicorn, adev."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from tests.e2e.helpers import ServerProcess, start_example, stop_example
from tests.support.nginxproc import NginxProcess, nginx_path
from tests.support.optional import require_tool
from tests.support.procs import HOST, subprocess_env

#: ``app, nginx = behind_nginx(env={...}, directives={...})``
BehindNginx = Callable[..., tuple[ServerProcess, NginxProcess]]


@pytest.fixture
def behind_nginx(tmp_path: Path) -> Iterator[BehindNginx]:
    """``python -m example_app`` trusting 127.0.0.1, with nginx in front; both stopped after."""
    path = nginx_path()
    require_tool("nginx", path is not None, "apt-get install -y nginx")
    assert path is not None
    started: list[tuple[ServerProcess, NginxProcess]] = []

    def start(
        env: Mapping[str, str] | None = None, directives: Mapping[str, str] | None = None
    ) -> tuple[ServerProcess, NginxProcess]:
        extra = {"SPRY_TRUSTED_PROXIES": "127.0.0.1", **(env or {})}
        app = start_example(
            tmp_path / f"app-{len(started)}.log", ["--log-level", "DEBUG"],
            env=subprocess_env(extra),
        )  # fmt: skip
        nginx = NginxProcess(path, f"{HOST}:{app.port}", directives)
        started.append((app, nginx))
        nginx.start()
        return app, nginx

    yield start
    for app, nginx in started:
        nginx.cleanup()
        stop_example(app)
