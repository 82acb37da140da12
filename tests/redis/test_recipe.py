"""The multi-worker recipe of docs/guides/processes.md, run as written (ports aside).

The page's gunicorn command runs against a test redis-server on a free port:
both workers log at INFO (gunicorn configures only its own loggers, so the
example sets logging up itself), use Redis, and answer on the address.
"""

from __future__ import annotations

import shlex
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.helpers import start_example
from tests.support.optional import require_tool
from tests.support.polling import eventually
from tests.support.procs import HOST, REPO_ROOT, free_port, stop_process, subprocess_env
from tests.support.redisproc import RedisProcess

PAGE = REPO_ROOT / "docs" / "guides" / "processes.md"
GUNICORN = Path(sys.executable).parent / "gunicorn"


def recipe_lines() -> list[str]:
    text = PAGE.read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines()]


def test_the_recipe_installs_what_it_runs_and_starts_redis() -> None:
    lines = recipe_lines()
    assert "sudo apt-get install -y redis-server" in lines
    assert "redis-cli ping || redis-server --daemonize yes" in lines
    assert "python3 -m venv .venv && .venv/bin/pip install -q -e '.[redis]' gunicorn" in lines


@pytest.mark.timeout(90)
async def test_the_recipe_runs_two_logging_workers_on_redis(
    tmp_path: Path, redis_server: RedisProcess
) -> None:
    require_tool("gunicorn", GUNICORN.exists(), f"{GUNICORN} missing: pip install gunicorn")
    (line,) = [line for line in recipe_lines() if line.startswith("SPRY_BROKER_URL=")]
    words = shlex.split(line)
    assert words[0] == "SPRY_BROKER_URL=redis://127.0.0.1:6379/0"
    assert words[1] == ".venv/bin/gunicorn"
    port = free_port()
    # Beyond the page: no control socket (gunicorn's is one fixed path per user, which
    # would be shared with any other gunicorn running on the machine).
    command = [str(GUNICORN), *words[2:], "--no-control-socket"]
    command[command.index("127.0.0.1:4000")] = f"{HOST}:{port}"
    env = subprocess_env({"SPRY_BROKER_URL": redis_server.url})
    env.pop("SPRY_LOG_LEVEL", None)
    server = start_example(tmp_path / "gunicorn.log", env=env, command=command, port=port)
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://{HOST}:{port}/stats") as response,
        ):
            assert (await response.json())["broker"].startswith("RedisBroker(")
        await eventually(lambda: server.log().count("INFO example_app: Chat rooms broker") == 2)
    finally:
        stop_process(server.proc, signal.SIGTERM, timeout=20.0)
    log = server.log()
    assert log.count("INFO example_app: Chat rooms broker: RedisBroker(") == 2, log
    assert "Traceback" not in log, log
