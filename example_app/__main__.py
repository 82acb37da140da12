"""``python -m example_app [--host H] [--port P] [--file-routes]``: serve the echo chat and rooms.

The rooms broker comes from ``SPRY_BROKER_URL`` (unset: in-memory).
"""

from __future__ import annotations

import argparse
import logging

from aiohttp import web

from .main import create_app, create_file_routes_app


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
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = (
        create_file_routes_app() if args.file_routes else create_app()
    )  # coroutines: run_app awaits them
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
