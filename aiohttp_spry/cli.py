"""``spry serve [PROJECT_DIR] [--host H] [--port P] [--reload]``: Spry's ``dart run spry serve``.

Serves a project folder (``routes/``, ``middleware/``, ``public/``,
``hooks.py``, ``spry_config.py``; see :mod:`aiohttp_spry.project`) with
``web.run_app``, or with ``--reload`` through aiohttp-devtools, which restarts
the server when a file of the project changes (``pip install aiohttp-devtools``;
it listens on every interface, as ``adev runserver`` does, and serves its
live-reload app on the next port).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from .exceptions import RouteConflictError
from .project import DEFAULT_HOST, DEFAULT_PORT, PROJECT_ENV, create_app, read_config

log = logging.getLogger("aiohttp_spry.cli")


def main(argv: Sequence[str] | None = None) -> int:
    """The ``spry`` console script. Returns the exit status (2: bad arguments or project)."""
    parser = argparse.ArgumentParser(prog="spry", description="Spry-style projects on aiohttp.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="serve a project folder", description=__doc__)
    serve.add_argument(
        "project", nargs="?", default=".", metavar="PROJECT_DIR", help="the project (.)"
    )
    serve.add_argument("--host", help=f"address to bind (spry_config.py, else {DEFAULT_HOST})")
    serve.add_argument(
        "--port", type=int, help=f"port to bind (spry_config.py, else {DEFAULT_PORT})"
    )
    serve.add_argument(
        "--reload", action="store_true", help="restart on changes (aiohttp-devtools)"
    )
    serve.add_argument("--debug", action="store_true", help="tracebacks in 500 responses")
    serve.add_argument("--log-level", default="INFO", help="logging level (INFO)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    project = Path(args.project).resolve()
    try:
        config = read_config(project)
        host = args.host or config.host or DEFAULT_HOST
        port = args.port or config.port or DEFAULT_PORT
        if args.reload:
            return _serve_with_reload(project, host, port)
        app = create_app(project, debug=args.debug)
    except (FileNotFoundError, RouteConflictError) as exc:
        print(f"spry serve: {exc}", file=sys.stderr)
        return 2
    log.info("Serving %s on http://%s:%d", project, host, port)
    web.run_app(app, host=host, port=port, print=None)
    return 0


def _serve_with_reload(project: Path, host: str, port: int) -> int:
    try:
        from aiohttp_devtools.runserver import runserver  # type: ignore[import-untyped]
    except ImportError:
        print(
            "spry serve --reload needs aiohttp-devtools: pip install aiohttp-devtools",
            file=sys.stderr,
        )
        return 2
    from . import project as project_module

    # Check the project here, so a mistake is one clear line instead of a reload loop.
    create_app(project)
    os.environ[PROJECT_ENV] = str(project)
    package_root = Path(project_module.__file__).resolve().parent.parent
    log.info("Serving %s on port %d with reload (aiohttp-devtools)", project, port)
    web.run_app(
        **runserver(
            app_path=str(Path(project_module.__file__).resolve()),
            root_path=str(project),
            python_path=str(package_root),
            app_factory_name="app_from_environment",
            host=host,
            main_port=port,
            livereload=False,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
