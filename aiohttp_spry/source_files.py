"""A project's own Python files (route files, ``_middleware.py``, ``hooks.py``,
``spry_config.py``): imported by path, and the functions they define checked.

Every problem is a :class:`RouteConflictError` naming the file, raised when the
project is loaded, so a mistake stops the server at startup instead of
answering 500 on the first request.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from .exceptions import RouteConflictError


def load_module(root: Path, file: Path) -> ModuleType:
    """Import ``file`` as a module named after its place under ``root``.

    The name carries a digest of ``root``, so two projects (or two test trees)
    never share a module; the module is in ``sys.modules`` so that dataclasses,
    pickling and tracebacks work as in any imported module.

    Raises:
        RouteConflictError: the file cannot be imported as Python.
    """
    relative = file.relative_to(root).with_suffix("")
    digest = hashlib.sha1(str(root).encode()).hexdigest()[:8]
    name = f"spry_project_{digest}." + ".".join(relative.parts)
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise RouteConflictError(f"{file}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def require(module: ModuleType, file: Path, attribute: str) -> Any:
    """``module.attribute``, which the file must define.

    Raises:
        RouteConflictError: it does not.
    """
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise RouteConflictError(f"{file} must define {attribute!r}") from None


def check_callable(
    value: Any, file: Path, attribute: str, parameters: tuple[str, ...]
) -> Callable[..., Any]:
    """Refuse a function that cannot be called with ``parameters`` (positionally).

    ``def handler(event)``, ``def handler(event, extra=None)`` and
    ``def handler(*args)`` pass for ``("event",)``; ``def handler()`` and
    ``def handler(event, user)`` do not.

    Raises:
        RouteConflictError: ``value`` is not callable, or its signature does
            not accept exactly those arguments (the message names the file,
            the function and the expected signature).
    """
    expected = f"{attribute}({', '.join(parameters)})"
    if not callable(value):
        raise RouteConflictError(
            f"{file}: {attribute!r} must be callable as {expected}, got {value!r}"
        )
    try:
        signature = inspect.signature(value)
    except (TypeError, ValueError):  # some builtins have none: let them through
        return value  # type: ignore[no-any-return]
    try:
        signature.bind(*parameters)
    except TypeError as exc:
        raise RouteConflictError(
            f"{file}: {attribute!r} has the signature {attribute}{signature}, which cannot be "
            f"called as {expected} ({exc})"
        ) from None
    return value  # type: ignore[no-any-return]


def check_async(value: Any, file: Path, attribute: str, parameters: tuple[str, ...]) -> Any:
    """Like :func:`check_callable`, and the function must be ``async def``.

    Raises:
        RouteConflictError: it is not a coroutine function (or async callable),
            or its signature is wrong.
    """
    check_callable(value, file, attribute, parameters)
    call = getattr(value, "__call__", None)  # noqa: B004 - async callable objects
    if not (inspect.iscoroutinefunction(value) or inspect.iscoroutinefunction(call)):
        raise RouteConflictError(
            f"{file}: {attribute!r} ({value!r}) must be an async function: "
            f"async def {attribute}({', '.join(parameters)})"
        )
    return value
