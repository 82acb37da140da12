"""``python -m example_app [--host H] [--port P] [--file-routes] [--log-level L] [--loop uvloop]``.

Serves the echo chat (``/chat``), the chat rooms and their page, ``/stats`` and
``/asyncapi.json``; with ``--file-routes``, only ``/chat`` and ``/private/chat``
from ``example_app/routes/``. The rooms broker comes from ``SPRY_BROKER_URL``
(unset: in-memory); the other settings are in ``example_app.main``. Prints the
URL it listens on once it does.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from aiohttp import web

from aiohttp_spry import raise_open_files_limit

from .main import LOG_FORMAT, create_app, create_file_routes_app, keepalive_from_env

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def listening_line(host: str, port: int, *, file_routes: bool) -> str:
    """What the server prints once it listens: where to point a browser or a client."""
    shown = f"[{host}]" if ":" in host else host
    base = f"{shown}:{port}"
    if file_routes:
        return (
            f"Serving on http://{base} (file routes): echo chat ws://{base}/chat, "
            f"private chat ws://{base}/private/chat?token=... (Ctrl+C to stop)"
        )
    return (
        f"Serving on http://{base}: chat page http://{base}/, echo chat ws://{base}/chat, "
        f"AsyncAPI http://{base}/asyncapi.json (Ctrl+C to stop)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m example_app", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=4000, help="port to bind (4000)")
    parser.add_argument(
        "--file-routes",
        action="store_true",
        help="serve the file routes of example_app/routes/: /, /about, /chat, /private/chat",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=LEVELS,
        help="logging level of the server's log lines on stderr (INFO)",
    )
    parser.add_argument(
        "--keepalive-timeout",
        type=float,
        default=None,
        help="close a connection that has not sent a complete request, or stays idle, "
        "after this many seconds (SPRY_KEEPALIVE_TIMEOUT, else 15)",
    )
    parser.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="event loop: asyncio's own, or uvloop (pip install 'aiohttp_spry[uvloop]')",
    )
    args = parser.parse_args(argv)
    if args.keepalive_timeout is not None and not args.keepalive_timeout > 0:
        parser.error(f"--keepalive-timeout must be positive, got {args.keepalive_timeout}")
    try:
        keepalive = args.keepalive_timeout or keepalive_from_env()
    except ValueError as error:
        parser.error(str(error))
    loop = None
    if args.loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            parser.error("--loop uvloop needs uvloop: pip install 'aiohttp_spry[uvloop]'")
        loop = uvloop.new_event_loop()
    logging.basicConfig(level=args.log_level, format=LOG_FORMAT)
    raise_open_files_limit()  # one session, one descriptor: logs what it did
    factory = create_file_routes_app if args.file_routes else create_app
    app = factory(keepalive_timeout=keepalive)  # a coroutine: run_app awaits it
    line = listening_line(args.host, args.port, file_routes=args.file_routes)

    def announce(_: Any) -> None:  # run_app calls it once the sockets listen
        print(line, flush=True)

    web.run_app(app, host=args.host, port=args.port, print=announce, access_log=None, loop=loop)


if __name__ == "__main__":
    main()
