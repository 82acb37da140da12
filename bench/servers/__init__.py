"""The servers under test, one module each, all with the same two routes.

``GET /ws``: a WebSocket that echoes every message back, text as text and
binary as binary. ``GET /hello``: ``200 text/plain; charset=utf-8`` with the
body ``Hello, World!``. Each runs on one process, on the stdlib asyncio event
loop, with access logging off and WebSocket pings off:

    python -m bench.servers --kind spry --port 8081
    python -m bench.servers.spry_aiohttp --port 8081
"""

from __future__ import annotations

import resource

#: kind -> (module under bench.servers, label in the results)
KINDS: dict[str, tuple[str, str]] = {
    "raw": ("raw_aiohttp", "raw aiohttp"),
    "spry": ("spry_aiohttp", "aiohttp_spry"),
    "starlette": ("starlette_uvicorn", "Starlette on uvicorn"),
    "websockets": ("websockets_asyncio", "websockets (asyncio server)"),
}

HOST = "127.0.0.1"
#: Listen backlog for every server, so connection bursts never hit the default 100/128.
BACKLOG = 1024


def raise_fd_limit() -> None:
    """Allow as many open sockets as the hard limit does (idle-session figure)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
