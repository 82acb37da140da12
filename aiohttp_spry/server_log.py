"""aiohttp's "Error handling request" for a request its parser refused: one WARNING line.

aiohttp logs every request its HTTP parser rejects (a 64 KiB header, 500
headers, a malformed request line) at ERROR with a full traceback on
``aiohttp.server``, so any client can fill the log with tracebacks. Those are
the client's mistakes, answered with 400, not the server's: this filter, put
on that logger with the logging API (aiohttp is not patched), rewrites each
into one WARNING line with the facts (peer, status, aiohttp's message) and
lets at most ``burst`` through per ``window`` seconds; the next line that gets
through says how many were suppressed. Errors that are not parser refusals
(a handler's exception, status 500) pass unchanged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final

from aiohttp.http import HttpProcessingError

#: The logger aiohttp's request handler logs to.
SERVER_LOGGER: Final = "aiohttp.server"
_MESSAGE: Final = "Error handling request"


class BadRequestLogFilter(logging.Filter):
    """Turns parser refusals on ``aiohttp.server`` into rate-limited WARNING lines.

    Args:
        burst: lines let through per window (the rest are counted, not logged).
        window: seconds.
        clock: monotonic seconds (a parameter for tests).
    """

    def __init__(
        self, burst: int = 10, window: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        if not isinstance(burst, int) or burst < 1:
            raise ValueError(f"burst must be an int >= 1, got {burst!r}")
        if not isinstance(window, (int, float)) or window <= 0:
            raise ValueError(f"window must be a positive number of seconds, got {window!r}")
        self.burst = burst
        self.window = float(window)
        self._clock = clock
        self._window_start = -float("inf")
        self._passed = 0
        self._suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, HttpProcessingError) or not str(record.msg).startswith(_MESSAGE):
            return True
        now = self._clock()
        if now - self._window_start >= self.window:
            self._window_start, self._passed = now, 0
        if self._passed >= self.burst:
            self._suppressed += 1
            return False
        self._passed += 1
        peer = record.args[0] if isinstance(record.args, tuple) and record.args else "unknown"
        message = str(error.message).strip().replace("\n", " ") or type(error).__name__
        suppressed, self._suppressed = self._suppressed, 0
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg = "Bad request from %s refused with %s (%s: %s)%s"
        record.args = (
            peer,
            error.code,
            type(error).__name__,
            message[:200],
            f"; {suppressed} more suppressed (at most {self.burst} per {self.window:g}s)"
            if suppressed
            else "",
        )
        record.exc_info = record.exc_text = None
        record.stack_info = None
        return True


def quiet_bad_requests(burst: int = 10, window: float = 60.0) -> BadRequestLogFilter:
    """Put a :class:`BadRequestLogFilter` on ``aiohttp.server`` (once per process).

    ``Spry.init_app`` calls it when an application starts; calling it again
    returns the filter already there.
    """
    server_logger = logging.getLogger(SERVER_LOGGER)
    for existing in server_logger.filters:
        if isinstance(existing, BadRequestLogFilter):
            return existing
    installed = BadRequestLogFilter(burst, window)
    server_logger.addFilter(installed)
    return installed
