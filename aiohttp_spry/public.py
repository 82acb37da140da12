"""A project's ``public/`` folder: static files served before routing, for GET and HEAD.

Each file becomes one aiohttp route at its own path (``public/css/app.css`` →
``GET /css/app.css``) answered by aiohttp's ``web.FileResponse`` (content type,
``Content-Length``, ``ETag``/``Last-Modified`` with 304s, ``Range``, HEAD
without a body, sendfile). No middleware and no Spry code runs for them.

The rule that keeps a file from shadowing a route wrongly:

1. A file is served only for GET and HEAD at exactly its path; any other
   method, and every other path, goes on to the routes.
2. A file wins over routes with parameters or catch-alls (``/users/[id]``,
   the root fallback): "served before routing", as in Spry.
3. A file and a route without parameters on the same path, for GET or HEAD
   (``public/about`` and ``routes/about.get.py``), are refused at startup with
   a :class:`RouteConflictError` naming both: neither could be reached reliably.
4. Dot files and folders (``.env``, ``.git/``), files whose name holds ``{`` or
   ``}``, and links leading outside ``public/`` are never served (the first at
   DEBUG, the others logged at WARNING when the folder is read).

The folder is read once, when it is loaded: a file added later is served
after a restart (``spry serve --reload`` restarts on any change).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import attrs
from aiohttp import web

from .log import logger


@attrs.frozen
class PublicFile:
    """One file of ``public/`` and the URL path it is served at."""

    url_path: str
    file: Path

    async def handle(self, request: web.Request) -> web.FileResponse:
        """The aiohttp handler: aiohttp's own static file response."""
        return web.FileResponse(self.file)


def scan_public(directory: str | Path) -> tuple[PublicFile, ...]:
    """The files of a ``public/`` folder, sorted by URL path.

    Raises:
        FileNotFoundError: ``directory`` is not a folder.
    """
    root = Path(directory).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"public folder {str(directory)!r} does not exist ({root})")
    found = []
    for file in sorted(root.rglob("*")):
        relative = file.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            logger.debug("public/: not serving the dot file %s", file)
            continue
        if not file.is_file():
            continue
        if not file.resolve().is_relative_to(root):
            logger.warning("public/: not serving %s: it links outside %s", file, root)
            continue
        if any(c in str(relative) for c in "{}"):
            logger.warning("public/: not serving %s: '{' and '}' cannot be in a route path", file)
            continue
        found.append(PublicFile("/" + quote(relative.as_posix()), file))
    return tuple(found)
