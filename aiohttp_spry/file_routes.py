"""The loader: a scanned ``routes/`` (and ``middleware/``) folder, imported into declarations.

:mod:`~aiohttp_spry.scanner` reads the names and applies the rules names decide;
this module imports each file and checks what it defines:

- a route file defines ``handler(event)``, and may define ``middleware`` (a list)
  and ``on_error(error, event)`` for itself alone, like Spry's ``defineHandler``;
- ``_middleware[.method].py`` defines ``middleware``: one ``async def (event, next)``
  or a list;
- ``_error[.method].py`` defines ``on_error(error, event)``;
- ``middleware/NN_name[.method].py`` defines ``middleware``, as ``_middleware.py``.

Every mistake is a :class:`RouteConflictError` naming the file, raised before
the application starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from .exceptions import RouteConflictError
from .scanner import ScannedHook, ScannedRoute, scan_middleware_folder, scan_routes
from .source_files import check_async, check_callable, load_module, require


@attrs.frozen
class FileRoute:
    """One aiohttp path of a route file (an optional last segment gives two)."""

    file: Path
    path: str
    methods: tuple[str, ...]
    handler: Any
    middleware: tuple[Any, ...]
    on_error: Any


@attrs.frozen
class FileHook:
    """A ``_middleware`` / ``_error`` file's functions, the folder path they scope to,
    and their methods (``None``: every method)."""

    file: Path
    scope: str
    methods: tuple[str, ...] | None
    functions: tuple[Any, ...]


@attrs.frozen
class FileRoutes:
    routes: tuple[FileRoute, ...]
    middleware: tuple[FileHook, ...]
    error_handlers: tuple[FileHook, ...]


def load_routes(directory: str | Path) -> FileRoutes:
    """Scan a routes folder and import its files, in registration order.

    Raises:
        FileNotFoundError: ``directory`` is not a folder.
        RouteConflictError: two files claim one route, or a file is malformed
            (the message names the files).
    """
    tree = scan_routes(directory)
    root = Path(directory).resolve()
    middleware = tuple(_middleware_hook(root, hook) for hook in tree.middleware)
    error_handlers = tuple(_error_hook(root, hook) for hook in tree.error_handlers)
    routes = tuple(route for scanned in tree.routes for route in _routes(root, scanned))
    return FileRoutes(routes, middleware, error_handlers)


def load_middleware_folder(directory: str | Path) -> tuple[FileHook, ...]:
    """Import a global ``middleware/`` folder, in file-name order.

    Raises:
        FileNotFoundError: ``directory`` is not a folder.
        RouteConflictError: a file does not define a valid ``middleware``.
    """
    root = Path(directory).resolve()
    return tuple(_middleware_hook(root, hook) for hook in scan_middleware_folder(directory))


def _routes(root: Path, scanned: ScannedRoute) -> list[FileRoute]:
    module = load_module(root, scanned.file)
    handler = check_callable(
        require(module, scanned.file, "handler"), scanned.file, "handler", ("event",)
    )
    middleware = tuple(
        check_async(mw, scanned.file, "middleware", ("event", "next"))
        for mw in _as_tuple(getattr(module, "middleware", ()))
    )
    on_error = getattr(module, "on_error", None)
    if on_error is not None:
        check_callable(on_error, scanned.file, "on_error", ("error", "event"))
    return [
        FileRoute(scanned.file, path, scanned.methods, handler, middleware, on_error)
        for path in scanned.paths()
    ]


def _middleware_hook(root: Path, hook: ScannedHook) -> FileHook:
    module = load_module(root, hook.file)
    functions = _as_tuple(require(module, hook.file, "middleware"))
    if not functions:
        raise RouteConflictError(f"{hook.file}: 'middleware' is an empty list")
    for function in functions:
        check_async(function, hook.file, "middleware", ("event", "next"))
    return FileHook(hook.file, hook.scope, hook.methods, functions)


def _error_hook(root: Path, hook: ScannedHook) -> FileHook:
    module = load_module(root, hook.file)
    on_error = check_callable(
        require(module, hook.file, "on_error"), hook.file, "on_error", ("error", "event")
    )
    return FileHook(hook.file, hook.scope, hook.methods, (on_error,))


def _as_tuple(value: Any) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)
