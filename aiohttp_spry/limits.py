"""The process's open-file limit: one WebSocket session is one file descriptor.

A server that holds thousands of idle sessions runs out of descriptors at the
soft ``RLIMIT_NOFILE`` (often 1,024) long before memory; the hard limit, which
an unprivileged process may raise its soft limit to, is usually far higher.
"""

from __future__ import annotations

import sys

from .log import logger

__all__ = ["raise_open_files_limit"]


def raise_open_files_limit() -> tuple[int, int]:
    """Raise the soft open-file limit (``RLIMIT_NOFILE``) to the hard limit; log what it did.

    Call it once at startup, before the server accepts connections: each
    WebSocket session holds one descriptor, so the soft limit caps the sessions
    one process can hold. One INFO line on the ``aiohttp_spry`` logger says
    what happened, with both numbers. Without the :mod:`resource` module
    (Windows) it changes nothing and says so.

    Returns:
        The soft limit before and after (equal when nothing changed; ``-1``
        for both without :mod:`resource`). An unlimited hard limit
        (``RLIM_INFINITY``) is reported as ``resource.RLIM_INFINITY``.

    Raises nothing: a refusal by the system (``setrlimit`` failing, e.g. an
    unlimited hard limit above the kernel's ``nr_open`` on macOS) is logged
    at WARNING and the soft limit is left as it was.

    Example::

        from aiohttp import web
        from aiohttp_spry import Spry, raise_open_files_limit

        raise_open_files_limit()  # INFO: open files limit raised from 1024 to 20000 ...
        app = web.Application()
        Spry(app)
        web.run_app(app)
    """
    if sys.platform == "win32":  # no resource module; the C runtime's own limit applies
        logger.info("Open files limit: not adjustable on this platform (no resource module)")
        return (-1, -1)
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        logger.info(
            "Open files limit already at the hard limit: soft %s, hard %s",
            _shown(soft),
            _shown(hard),
        )
        return (soft, soft)
    target = hard
    if hard == resource.RLIM_INFINITY:
        # macOS refuses an unlimited soft limit; its kernel maximum is the most it takes.
        target = _kernel_maximum(soft)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as error:
        logger.warning(
            "Open files limit not raised: setrlimit(RLIMIT_NOFILE, (%s, %s)) failed: %s; "
            "it stays at soft %s (hard %s)",
            _shown(target),
            _shown(hard),
            error,
            _shown(soft),
            _shown(hard),
        )
        return (soft, soft)
    after = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    logger.info(
        "Open files limit raised from %s to %s (the hard limit is %s)",
        _shown(soft),
        _shown(after),
        _shown(hard),
    )
    return (soft, after)


def _shown(limit: int) -> str:
    import resource

    return "unlimited" if limit == resource.RLIM_INFINITY else str(limit)


def _kernel_maximum(fallback: int) -> int:
    """The most descriptors the kernel lets one process have when the hard limit is unlimited."""
    if sys.platform == "darwin":
        return max(fallback, 10240)  # OPEN_MAX: macOS refuses more for RLIM_INFINITY hard limits
    try:
        with open("/proc/sys/fs/nr_open") as nr_open:
            return int(nr_open.read())
    except (OSError, ValueError):
        import resource

        return int(resource.RLIM_INFINITY)
