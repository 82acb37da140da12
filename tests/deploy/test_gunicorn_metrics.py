"""The gunicorn recipe with two uvloop workers: /metrics adds up both workers' figures
(prometheus_client's multiprocess mode); ``python -m example_app --loop uvloop``."""

from __future__ import annotations

import signal
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.helpers import (
    IO_TIMEOUT,
    ServerProcess,
    assert_server_still_serves,
    start_example,
    stop_example,
)
from tests.support.optional import require_tool
from tests.support.polling import eventually
from tests.support.procs import HOST, REPO_ROOT, free_port, stop_process, subprocess_env

pytestmark = pytest.mark.e2e

GUNICORN = Path(sys.executable).parent / "gunicorn"
MAX_SESSIONS = 40


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[ServerProcess]:
    require_tool("gunicorn", GUNICORN.exists(), f"{GUNICORN} missing: pip install gunicorn")
    port = free_port()
    multiproc = tmp_path / "prometheus"
    command = [
        str(GUNICORN), "-c", str(REPO_ROOT / "deploy" / "gunicorn.conf.py"),
        "example_app.main:create_app", "--bind", f"{HOST}:{port}", "--workers", "2",
        "--worker-class", "aiohttp.GunicornUVLoopWebWorker", "--no-control-socket",
    ]  # fmt: skip
    env = subprocess_env({"PROMETHEUS_MULTIPROC_DIR": str(multiproc)})
    server = start_example(tmp_path / "gunicorn.log", env=env, command=command, port=port)
    try:
        yield server
    finally:
        stop_process(server.proc, signal.SIGTERM, timeout=20.0)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    timeout = aiohttp.ClientTimeout(total=IO_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        yield session


async def scrape(http: aiohttp.ClientSession, port: int) -> dict[str, float]:
    async with http.get(
        f"http://{HOST}:{port}/metrics", headers={"Connection": "close"}
    ) as response:
        assert response.status == 200
        text = await response.text()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


async def test_metrics_add_up_across_two_uvloop_workers(
    gunicorn: ServerProcess, http: aiohttp.ClientSession
) -> None:
    url = f"ws://{HOST}:{gunicorn.port}/chat"
    sessions: list[aiohttp.ClientWebSocketResponse[bool]] = []

    async def stats() -> dict[str, object]:
        async with http.get(
            f"http://{HOST}:{gunicorn.port}/stats", headers={"Connection": "close"}
        ) as response:
            answer: dict[str, object] = await response.json()
            return answer

    # Both workers up (gunicorn listens before its workers have loaded the app).
    pids: set[object] = set()

    async def both_answer() -> bool:
        pids.add((await stats())["pid"])
        return len(pids) == 2

    await eventually(both_answer, 20.0, 0.05, what="both workers answering /stats")
    pids = set()
    try:
        # Open sessions until both workers hold some (each handshake on a new connection).
        while len(pids) < 2 and len(sessions) < MAX_SESSIONS:
            ws = await http.ws_connect(url, headers={"Connection": "Upgrade"})
            await ws.receive_str(timeout=IO_TIMEOUT)  # the welcome
            sessions.append(ws)
            answer = await stats()
            assert answer["loop"] == "uvloop"
            if answer["sessions"]:
                pids.add(answer["pid"])
        assert len(pids) == 2, f"one worker took all {len(sessions)} sessions"
        for ws in sessions:
            await ws.send_str("one")
            assert await ws.receive_str(timeout=IO_TIMEOUT) == "Echo: one"
        opened = len(sessions)

        def added_up(samples: dict[str, float]) -> bool:
            return (
                samples.get("aiohttp_spry_sessions{}") == opened
                and samples.get("aiohttp_spry_handshakes_total{outcome=accepted,status=101}")
                == opened
                and samples.get("aiohttp_spry_messages_received_total{type=text}") == opened
            )

        async def both_workers() -> dict[str, float] | None:
            samples = await scrape(http, gunicorn.port)
            return samples if added_up(samples) else None

        samples = await eventually(both_workers, IO_TIMEOUT, 0.2, what="figures of both workers")
        assert samples["aiohttp_spry_broker_connected{}"] == 1  # the minimum over workers
    finally:
        for ws in sessions:
            await ws.close()

    async def all_closed() -> bool:
        samples = await scrape(http, gunicorn.port)
        return samples.get("aiohttp_spry_sessions{}") == 0 and (
            samples.get("aiohttp_spry_session_closes_total{code=1000}") == opened
        )

    await eventually(all_closed, IO_TIMEOUT, 0.2, what="closes counted on both workers")
    log = gunicorn.log()
    assert "Traceback" not in log and "[ERROR]" not in log, log


@pytest.fixture
def uvloop_example(tmp_path: Path) -> Iterator[ServerProcess]:
    server = start_example(tmp_path / "server.log", ["--loop", "uvloop"])
    try:
        yield server
    finally:
        stop_example(server)


async def test_python_m_example_app_runs_on_uvloop(
    uvloop_example: ServerProcess, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"http://{HOST}:{uvloop_example.port}/stats") as response:
        assert (await response.json())["loop"] == "uvloop"
    await assert_server_still_serves(uvloop_example)
