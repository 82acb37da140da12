"""A non-network error in the Redis broker's subscriber is an outage like any other."""

from __future__ import annotations

import logging
import re

import pytest

from aiohttp_spry.pubsub.redis import RedisBroker
from tests.support.polling import eventually
from tests.support.redisproc import RedisProcess


async def test_outage_from_a_non_network_error_is_timed_from_its_start(
    redis_server: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    delivered: list[bytes] = []

    def deliver(topic: str, payload: bytes, binary: bool) -> None:
        delivered.append(payload)
        if len(delivered) == 1:
            raise RuntimeError("a bug in the delivery callback")

    receiver = RedisBroker(redis_server.url, reconnect_min=0.05, reconnect_max=0.2)
    sender = RedisBroker(redis_server.url)
    await receiver.start(deliver)
    await sender.start(lambda topic, payload, binary: None)
    try:
        with caplog.at_level(logging.DEBUG, "aiohttp_spry.pubsub"):
            await receiver.subscribe("news")
            sender.publish("news", b"first", False)
            await eventually(
                lambda: "Redis broker reconnected" in caplog.text, what="the reconnected line"
            )
            await receiver.subscribe("news")
            sender.publish("news", b"second", False)
            await eventually(lambda: b"second" in delivered, what="the second message")
    finally:
        await sender.close()
        await receiver.close()
    lost = [r for r in caplog.records if "Redis broker lost" in r.getMessage()]
    assert len(lost) == 1
    assert lost[0].levelno == logging.WARNING
    assert "RuntimeError: a bug in the delivery callback" in lost[0].getMessage()
    assert lost[0].exc_info is not None  # an unexpected error keeps its traceback
    (back,) = [r.getMessage() for r in caplog.records if "reconnected" in r.getMessage()]
    took = float(re.search(r"after ([0-9.]+)s", back)[1])  # type: ignore[index]
    assert took < 5.0, back  # measured from the outage's start, not from 0
    assert delivered == [b"first", b"second"]
