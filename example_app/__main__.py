"""``python -m example_app [--host H] [--port P] [--file-routes] [--loop uvloop]``: serve it.

The echo chat and rooms. The rooms broker comes from ``SPRY_BROKER_URL``
(unset: in-memory); the other settings are in ``example_app.main``.
"""

from __future__ import annotations

import argparse
import logging

from aiohttp import web

from .main import create_app, create_file_routes_app, keepalive_from_env


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m example_app", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=4000, help="port to bind (4000)")
    parser.add_argument(
        "--file-routes",
        action="store_true",
        help="serve the same app from example_app/routes/ (adds /private/chat)",
    )
    parser.add_argument("--log-level", default="INFO", help="server logging level (INFO)")
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
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    factory = create_file_routes_app if args.file_routes else create_app
    app = factory(keepalive_timeout=keepalive)  # a coroutine: run_app awaits it
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None, loop=loop)


if __name__ == "__main__":
    main()
