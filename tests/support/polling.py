"""One way to wait for something that happens in its own time: ``await eventually(condition)``.

A server logs a moment after the frame the client waited for, a subscriber count
reaches Redis a little later: tests poll, boundedly, instead of sleeping a guess.

Example::

    await eventually(lambda: numsub(redis, channel) == 2, what="two subscribers in Redis")
    record = await eventually(lambda: find_warning(caplog), what="the 'too slow' WARNING")
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

__all__ = ["DEFAULT_INTERVAL", "DEFAULT_TIMEOUT", "eventually"]

T = TypeVar("T")

#: Seconds :func:`eventually` waits by default before it fails.
DEFAULT_TIMEOUT = 10.0
#: Seconds between two tries by default.
DEFAULT_INTERVAL = 0.02


@overload
async def eventually(
    condition: Callable[[], Awaitable[T | None]],
    timeout: float = ...,
    interval: float = ...,
    *,
    what: str | Callable[[], str] | None = ...,
) -> T: ...


@overload
async def eventually(
    condition: Callable[[], T | None],
    timeout: float = ...,
    interval: float = ...,
    *,
    what: str | Callable[[], str] | None = ...,
) -> T: ...


async def eventually(
    condition: Callable[[], object],
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = DEFAULT_INTERVAL,
    *,
    what: str | Callable[[], str] | None = None,
) -> object:
    """Call ``condition`` (sync or async) every ``interval`` seconds until its result is
    truthy; return that result.

    A try that raises ``AssertionError`` counts as not yet true, so a condition may be
    a block of asserts; anything else it raises (``pytest.fail()`` included) ends the
    wait at once. ``what`` names what is awaited in the failure message (a
    callable is called then, to describe the state at the end); by default the
    condition's name.

    Raises:
        AssertionError: not true within ``timeout`` seconds; the message names
            ``what``, the timeout and the last result (the last assertion is chained).
    """
    deadline = time.monotonic() + timeout
    while True:
        last_error: AssertionError | None = None
        try:
            result = condition()
            if inspect.isawaitable(result):
                result = await result
        except AssertionError as error:
            last_error, result = error, None
        if result:
            return result
        if time.monotonic() >= deadline:
            described = what() if callable(what) else what
            name = described or getattr(condition, "__qualname__", repr(condition))
            last = f"last assertion: {last_error}" if last_error else f"last result: {result!r}"
            raise AssertionError(f"not within {timeout} s: {name} ({last})") from last_error
        await asyncio.sleep(interval)
