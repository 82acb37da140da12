"""Smoke test of the echo harness against raw aiohttp: correctness only, never timing.

Every echoed frame is decoded and compared, byte counts are exact, close handshakes clean.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.client import Payload, echo_load, handshake_load, hold_idle
from bench.run import server
from bench.system import Proc


@pytest.fixture(scope="module")
def raw_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    log_dir: Path = tmp_path_factory.mktemp("bench")
    with server("raw", None, log_dir) as proc:
        yield proc


@pytest.mark.parametrize(
    "payload",
    [Payload.text(32, window=8), Payload.binary(4096, window=8)],
    ids=["text-32", "binary-4096"],
)
def test_echo_round_is_byte_exact(raw_server: Proc, payload: Payload) -> None:
    (result,) = echo_load(
        [raw_server.port],
        payload,
        connections=4,
        warmup=0.1,
        duration=0.3,
        sample_every=1,  # decode every single echoed frame
        probes=[raw_server.cpu],
    )
    assert result.totals.error_count == 0, result.totals.errors
    total = result.extra["total"]
    assert total > 0
    assert result.totals.verified == total  # every echo decoded and equal to what was sent
    assert result.count > 0


def test_handshake_round_is_clean(raw_server: Proc) -> None:
    (result,) = handshake_load([raw_server.port], concurrency=4, warmup=0.1, duration=0.3)
    assert result.totals.error_count == 0, result.totals.errors
    assert result.totals.done > 0


def test_idle_sessions_echo_once(raw_server: Proc) -> None:
    (at_10, rss), result = hold_idle(raw_server.port, 20, 0.05, raw_server.rss, first=10)
    assert result.totals.error_count == 0, result.totals.errors
    assert result.totals.verified == 20
    assert rss >= at_10 > 0
