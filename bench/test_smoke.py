"""Smoke test of the benchmark harness: one very short echo round against raw aiohttp.

Checks correctness only (every echoed frame decoded and compared, exact byte
counts, clean close handshakes), never timing. Run it with
``python -m pytest bench/test_smoke.py`` from the repository root.
"""

from __future__ import annotations

import pytest

from bench.client import echo_load, handshake_load, hold_idle
from bench.frames import OP_BINARY, OP_TEXT, Payload, binary_payload, text_payload
from bench.procs import Server


@pytest.fixture(scope="module")
def raw_server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    with Server("raw", None, tmp_path_factory.mktemp("bench")) as server:
        yield server


@pytest.mark.parametrize(
    "payload",
    [
        Payload("text", OP_TEXT, text_payload(32), window=8),
        Payload("binary", OP_BINARY, binary_payload(4096), window=8),
    ],
    ids=["text-32", "binary-4096"],
)
def test_echo_round_is_byte_exact(raw_server: Server, payload: Payload) -> None:
    result = echo_load(
        raw_server.port,
        payload,
        connections=4,
        window=8,
        warmup=0.1,
        duration=0.3,
        sample_every=1,  # decode every single echoed frame
        server_cpu=raw_server.cpu,
    )
    assert result.error_count == 0, result.errors
    total = result.extra["total_echoed"]
    assert total > 0
    assert result.verified == total  # every echo decoded and equal to what was sent
    assert result.window.count > 0


def test_handshake_round_is_clean(raw_server: Server) -> None:
    result = handshake_load(raw_server.port, concurrency=4, warmup=0.1, duration=0.3)
    assert result.error_count == 0, result.errors
    assert result.verified > 0


def test_idle_sessions_echo_once(raw_server: Server) -> None:
    rss, result = hold_idle(raw_server.port, 20, settle=0.05, measure=raw_server.rss)
    assert result.error_count == 0, result.errors
    assert result.verified == 20
    assert rss > 0
