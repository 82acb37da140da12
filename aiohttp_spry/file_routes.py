"""File routes: Spry's ``routes/`` folder, read into route declarations.

| file                        | route                                       |
|-----------------------------|---------------------------------------------|
| ``index.py``                | ``/`` (in a folder: the folder's path)      |
| ``chat.get.py``             | ``GET /chat`` (no method suffix: any method) |
| ``users/[id].py``           | ``/users/{id}``                             |
| ``users/[id([0-9]+)].py``   | ``/users/{id:[0-9]+}``                      |
| ``docs/[...slug].py``       | ``/docs/{slug:.+}`` (one or more segments)  |
| ``_middleware.py``          | ``middleware`` (one, or a list) for this folder and below |
| ``_error.py``               | ``on_error`` for this folder and below      |

Method suffixes: ``.get .post .put .patch .delete .head .options``.
A route file defines ``handler(event)``, and may define ``middleware`` (a list)
and ``on_error`` for itself alone, like Spry's ``defineHandler``. Other files
and folders starting with ``_`` or ``.`` are ignored, so helpers can live there.
Everything is checked when the folder is loaded: conflicting files are refused
with a :class:`RouteConflictError` naming both.
"""

from __future__ import annotations

import enum
import hashlib
import importlib.util
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs

from .exceptions import RouteConflictError

_METHODS = {"get", "post", "put", "patch", "delete", "head", "options"}
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_CATCH_ALL = re.compile(rf"^\[\.\.\.(?P<name>{_NAME})\]$")
_REGEX_PARAM = re.compile(rf"^\[(?P<name>{_NAME})\((?P<regex>.+)\)\]$")
_PARAM = re.compile(rf"^\[(?P<name>{_NAME})\]$")


class SegmentKind(enum.IntEnum):
    """What a path segment matches, in registration order within one position:
    static first, then regex, then plain parameters, then catch-alls, so
    aiohttp tries the most specific first."""

    STATIC = 0
    REGEX = 1
    PLAIN = 2
    REST = 3


@attrs.frozen
class Segment:
    """One path segment parsed from a file or folder name."""

    source: Path
    kind: SegmentKind
    text: str  # the aiohttp form: "chat", "{id}", "{id:[0-9]+}", "{slug:.+}"
    name: str | None = None  # parameter name
    regex: str | None = None

    @property
    def shape(self) -> str:
        """The segment with its parameter name erased: what a request can tell apart."""
        if self.kind is SegmentKind.STATIC:
            return self.text
        return f"{{:{self.regex}}}" if self.regex is not None else "{}"


@attrs.frozen
class FileRoute:
    file: Path
    path: str
    methods: tuple[str, ...]
    handler: Any
    middleware: tuple[Any, ...]
    on_error: Any
    order: tuple[int, ...]


@attrs.frozen
class FileHook:
    """A ``_middleware.py`` or ``_error.py`` and the folder path it scopes to."""

    file: Path
    scope: str
    functions: tuple[Any, ...]


@attrs.frozen
class FileRoutes:
    routes: tuple[FileRoute, ...]
    middleware: tuple[FileHook, ...]
    error_handlers: tuple[FileHook, ...]


def scan(directory: str | Path) -> FileRoutes:
    """Read a routes folder into routes and scoped hooks, in registration order.

    Raises:
        FileNotFoundError: ``directory`` is not a folder.
        RouteConflictError: two files claim one route, or a file is malformed.
    """
    root = Path(directory).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"routes folder {str(directory)!r} does not exist ({root})")
    routes: list[FileRoute] = []
    middleware: list[FileHook] = []
    error_handlers: list[FileHook] = []
    for folder, prefix in _walk(root, ()):
        _check_folder_parameters(folder, prefix)
        scope = _path(prefix)
        for file in sorted(folder.glob("*.py")):
            if file.name == "_middleware.py":
                module = _load(root, file)
                functions = _as_tuple(_require(module, file, "middleware"))
                middleware.append(FileHook(file, scope, functions))
            elif file.name == "_error.py":
                module = _load(root, file)
                error_handlers.append(FileHook(file, scope, (_require(module, file, "on_error"),)))
            elif not file.name.startswith(("_", ".")):
                routes.append(_route(root, file, prefix))
    _check_duplicates(routes)
    routes.sort(key=lambda route: (route.order, route.path))
    return FileRoutes(tuple(routes), tuple(middleware), tuple(error_handlers))


def _walk(folder: Path, prefix: tuple[Segment, ...]) -> Iterator[tuple[Path, tuple[Segment, ...]]]:
    """Folders shallow first, each with the segments leading to it."""
    yield folder, prefix
    for child in sorted(folder.iterdir()):
        if child.is_dir() and not child.name.startswith(("_", ".")):
            segment = _segment(child, child.name)
            if segment.kind is SegmentKind.REST:
                raise RouteConflictError(
                    f"{child}: a catch-all [...{segment.name}] must be a file, not a folder"
                )
            yield from _walk(child, (*prefix, segment))


def _segment(source: Path, name: str) -> Segment:
    if match := _CATCH_ALL.match(name):
        return Segment(source, SegmentKind.REST, f"{{{match['name']}:.+}}", match["name"], ".+")
    if match := _REGEX_PARAM.match(name):
        try:
            re.compile(match["regex"])
        except re.error as exc:
            raise RouteConflictError(f"{source}: invalid regex {match['regex']!r}: {exc}") from None
        regex = match["regex"]
        return Segment(
            source, SegmentKind.REGEX, f"{{{match['name']}:{regex}}}", match["name"], regex
        )
    if match := _PARAM.match(name):
        return Segment(source, SegmentKind.PLAIN, f"{{{match['name']}}}", match["name"])
    if any(c in name for c in "[]{}"):
        raise RouteConflictError(
            f"{source}: {name!r} is not a valid segment; use [name], [name(regex)] or [...name]"
        )
    return Segment(source, SegmentKind.STATIC, name)


def _path(segments: tuple[Segment, ...]) -> str:
    return "/" + "/".join(segment.text for segment in segments)


def _split_method(file_name: str) -> tuple[str, tuple[str, ...]]:
    """``chat.get.py`` → ``("chat", ("GET",))``; ``chat.py`` → ``("chat", ("*",))``."""
    stem = file_name.removesuffix(".py")
    base, _, suffix = stem.rpartition(".")
    if base and suffix.lower() in _METHODS:
        return base, (suffix.upper(),)
    return stem, ("*",)


def _route(root: Path, file: Path, prefix: tuple[Segment, ...]) -> FileRoute:
    stem, methods = _split_method(file.name)
    segments = prefix if stem == "index" else (*prefix, _segment(file, stem))
    module = _load(root, file)
    handler = _require(module, file, "handler")
    return FileRoute(
        file=file,
        path=_path(segments),
        methods=methods,
        handler=handler,
        middleware=_as_tuple(getattr(module, "middleware", ())),
        on_error=getattr(module, "on_error", None),
        order=tuple(segment.kind for segment in segments),
    )


def _check_folder_parameters(folder: Path, prefix: tuple[Segment, ...]) -> None:
    """One folder may not name one parameter shape twice, nor hold two catch-alls."""
    seen: dict[str, Segment] = {}
    for child in sorted(folder.iterdir()):
        if child.name.startswith(("_", ".")) or not (child.is_dir() or child.suffix == ".py"):
            continue
        name = child.name if child.is_dir() else _split_method(child.name)[0]
        if name == "index":
            continue
        segment = _segment(child, name)
        if segment.kind is SegmentKind.STATIC:
            continue
        if segment.kind is SegmentKind.REST and "catch-all" in seen:
            raise RouteConflictError(
                f"{seen['catch-all'].source} and {child} are two catch-alls in one folder"
            )
        other = seen.setdefault(
            "catch-all" if segment.kind is SegmentKind.REST else segment.shape, segment
        )
        if other.name != segment.name:
            raise RouteConflictError(
                f"{other.source} and {child} both match {_path((*prefix, segment))!r} with "
                f"different parameter names ({other.name!r} vs {segment.name!r}); "
                "use one name per folder"
            )


def _check_duplicates(routes: list[FileRoute]) -> None:
    """Refuse two files serving one method on one path (``*`` overlaps every method)."""
    by_shape: dict[str, list[FileRoute]] = {}
    for route in routes:
        shape = re.sub(rf"\{{{_NAME}", "{", route.path)
        for other in by_shape.get(shape, []):
            methods = {*route.methods, *other.methods}
            if "*" in methods or len(methods) < len(route.methods) + len(other.methods):
                raise RouteConflictError(
                    f"{other.file} and {route.file} both serve "
                    f"{'/'.join(sorted(methods))} {route.path}"
                )
        by_shape.setdefault(shape, []).append(route)


def _load(root: Path, file: Path) -> ModuleType:
    relative = file.relative_to(root).with_suffix("")
    digest = hashlib.sha1(str(root).encode()).hexdigest()[:8]
    name = f"spry_routes_{digest}." + ".".join(relative.parts)
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise RouteConflictError(f"{file}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _require(module: ModuleType, file: Path, attribute: str) -> Any:
    try:
        value = getattr(module, attribute)
    except AttributeError:
        raise RouteConflictError(f"{file} must define {attribute!r}") from None
    if attribute != "middleware" and not callable(value):
        raise RouteConflictError(f"{file}: {attribute!r} must be callable, got {value!r}")
    return value


def _as_tuple(value: Any) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)
