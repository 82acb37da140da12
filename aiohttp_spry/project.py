"""A Spry project folder as an aiohttp application: what ``spry serve`` runs.

A project holds ``routes/``, and optionally ``middleware/``, ``public/``,
``hooks.py`` and ``spry_config.py`` (Spry's ``spry.config.dart``)::

    # spry_config.py
    host = "127.0.0.1"
    port = 4000

``spry serve``'s ``--host``/``--port`` win over ``spry_config.py``, which wins
over the defaults (127.0.0.1, 4000).

The project's files import as in a script run from it: the project folder is on
``sys.path`` (``from shared.db import pool``), and so is its parent, so a project
that is a package imports itself by name (``from example_app.chat import chat``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Final

import attrs
from aiohttp import web

from .exceptions import RouteConflictError
from .extension import Spry
from .source_files import load_module

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 4000
#: How ``spry serve --reload`` tells the reloaded process which project to serve.
PROJECT_ENV: Final = "SPRY_PROJECT_DIR"


@attrs.frozen
class ProjectConfig:
    """What ``spry_config.py`` sets (``None``: not set)."""

    host: str | None = None
    port: int | None = None


def read_config(project_dir: str | Path) -> ProjectConfig:
    """Read ``spry_config.py`` if the project has one.

    Raises:
        RouteConflictError: ``host`` is not a ``str`` or ``port`` not an ``int``
            in 1–65535 (the message names the file).
    """
    file = Path(project_dir).resolve() / "spry_config.py"
    if not file.is_file():
        return ProjectConfig()
    module = load_module(file.parent, file)
    host = getattr(module, "host", None)
    port = getattr(module, "port", None)
    if host is not None and not isinstance(host, str):
        raise RouteConflictError(f"{file}: host must be a str like '127.0.0.1', got {host!r}")
    if port is not None and (
        not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535
    ):
        raise RouteConflictError(f"{file}: port must be an int in 1-65535, got {port!r}")
    return ProjectConfig(host, port)


def create_app(project_dir: str | Path, *, debug: bool = False) -> web.Application:
    """An application serving the project (see :meth:`Spry.load_project`).

    Raises:
        FileNotFoundError: the folder is not a Spry project.
        RouteConflictError: a file of the project is refused.
    """
    root = Path(project_dir).resolve()
    for folder in (str(root.parent), str(root)):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    spry = Spry(debug=debug)
    spry.load_project(root)
    app = web.Application()
    spry.init_app(app)
    return app


async def app_from_environment() -> web.Application:
    """The factory ``spry serve --reload`` gives aiohttp-devtools: the project
    named by ``SPRY_PROJECT_DIR``.

    Raises:
        RuntimeError: ``SPRY_PROJECT_DIR`` is not set.
    """
    project = os.environ.get(PROJECT_ENV)
    if not project:
        raise RuntimeError(f"{PROJECT_ENV} is not set; run the project with `spry serve DIR`")
    return create_app(project)
