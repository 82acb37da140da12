"""``python -m example_app [--host H] [--port P] [--file-routes] [--log-level L]``.

Serves the echo chat (``/chat``), the chat rooms and their page, ``/stats`` and
``/asyncapi.json``; with ``--file-routes``, only ``/chat`` and ``/private/chat``
from ``example_app/routes/``. The rooms broker comes from ``SPRY_BROKER_URL``
(unset: in-memory). Prints the URL it listens on once it does.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from aiohttp import web

from .main import LOG_FORMAT, create_app, create_file_routes_app

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
        help="serve only /chat and the token-guarded /private/chat, from example_app/routes/",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=LEVELS,
        help="logging level of the server's log lines on stderr (INFO)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format=LOG_FORMAT)
    app = (
        create_file_routes_app() if args.file_routes else create_app()
    )  # coroutines: run_app awaits them
    line = listening_line(args.host, args.port, file_routes=args.file_routes)

    def announce(_: Any) -> None:  # run_app calls it once the sockets listen
        print(line, flush=True)

    web.run_app(app, host=args.host, port=args.port, print=announce, access_log=None)


if __name__ == "__main__":
    main()
