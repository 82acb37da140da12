"""A project's ``hooks.py``: Spry's ``onStart`` / ``onStop`` / ``onError`` on aiohttp's signals.

- ``on_start(app)`` runs in ``app.on_startup``, after the extension's own startup
  (the broker is connected);
- ``on_stop(app)`` runs first in ``app.on_cleanup``: after open WebSocket sessions
  got their 1001 close, before the broker closes;
- ``on_error(error, event)`` is the outermost error handler, tried after every
  route's, ``_error.py``'s and ``spry.on_error``'s: return a response to answer,
  ``None`` to pass the error on.

Each may be sync or async; each is optional. A hook with the wrong signature is
refused when the project is loaded, naming the file.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
from aiohttp import web

from .source_files import check_callable, load_module

AppHook = Callable[[web.Application], Any]


@attrs.frozen
class LifecycleHooks:
    """The hooks one ``hooks.py`` defines (``None``: not defined)."""

    file: Path
    on_start: AppHook | None = None
    on_stop: AppHook | None = None
    on_error: Callable[[Exception, Any], Any] | None = None

    def wire(self, app: web.Application) -> None:
        """Add ``on_start`` and ``on_stop`` to ``app``'s signals (``on_error`` is an
        error handler: :meth:`Spry.load_project <aiohttp_spry.Spry.load_project>`
        registers it)."""
        if self.on_start is not None:
            app.on_startup.append(_signal_handler(self.on_start))
        if self.on_stop is not None:
            app.on_cleanup.insert(0, _signal_handler(self.on_stop))


def load_hooks(file: str | Path) -> LifecycleHooks:
    """Import a ``hooks.py`` and check the hooks it defines.

    Raises:
        FileNotFoundError: ``file`` does not exist.
        RouteConflictError: a hook is not callable with its arguments.
    """
    path = Path(file).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"hooks file {str(file)!r} does not exist ({path})")
    module = load_module(path.parent, path)
    found: dict[str, Any] = {}
    for name, parameters in (
        ("on_start", ("app",)),
        ("on_stop", ("app",)),
        ("on_error", ("error", "event")),
    ):
        value = getattr(module, name, None)
        if value is not None:
            found[name] = check_callable(value, path, name, parameters)
    return LifecycleHooks(path, **found)


def _signal_handler(hook: AppHook) -> Callable[[web.Application], Any]:
    async def run(app: web.Application) -> None:
        result = hook(app)
        if inspect.isawaitable(result):
            await result

    run.__qualname__ = run.__name__ = getattr(hook, "__name__", "hook")
    return run
