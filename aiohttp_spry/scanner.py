"""The scanner: a Spry project's file names, read into routes, scopes and methods.

It reads names only (no file is imported: that is :mod:`~aiohttp_spry.file_routes`)
and applies every rule that names decide, so a tree that cannot be served is
refused before any of its code runs, with a :class:`RouteConflictError` naming
both files.

Segment syntax (a file name without ``.py`` and its method suffix, or a folder name):

| name                 | matches                                    | aiohttp path            |
|----------------------|--------------------------------------------|-------------------------|
| ``chat``             | the text itself                            | ``/chat``               |
| ``[id]``             | one segment, as ``params["id"]``           | ``/{id}``               |
| ``[id([0-9]+)]``     | one segment matching the regex             | ``/{id:[0-9]+}``        |
| ``[[id]]``           | that segment or nothing (file only)        | ``/`` and ``/{id}``     |
| ``[_]``              | one segment, not kept as a parameter       | ``/{__spry_0}``         |
| ``[...path]``        | one or more segments, as ``params["path"]`` | ``/{path:.+}``         |
| ``[...path+]``       | one or more segments (Spry's explicit form) | ``/{path:.+}``         |
| ``[[...path]]``      | zero or more segments (file only)          | ``/`` and ``/{path:.+}`` |
| ``[...]``            | one or more segments, not kept             | ``/{__spry_0:.+}``      |
| ``[name].[ext]``     | text and parameters in one segment         | ``/{name}.{ext}``       |
| ``post-[id].json``   | the same, with literal text around         | ``/post-{id}.json``     |

Method suffixes: ``.get .post .put .patch .delete .head .options`` (none: any
method), on route files and on ``_middleware``/``_error`` files alike.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator
from pathlib import Path

import attrs

from .exceptions import RouteConflictError

METHOD_SUFFIXES = frozenset({"get", "post", "put", "patch", "delete", "head", "options"})
#: The names the scanner gives unnamed wildcards; :class:`~aiohttp_spry.params.Params` hides them.
HIDDEN_PREFIX = "__spry_"
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_WHOLE = {
    "optional": re.compile(rf"^\[\[(?P<name>{_NAME})\]\]$"),
    "optional_rest": re.compile(rf"^\[\[\.\.\.(?P<name>{_NAME})\]\]$"),
    "rest": re.compile(rf"^\[\.\.\.(?P<name>{_NAME})\+?\]$"),
}
_PLACEHOLDER = re.compile(rf"\{{{_NAME}")
_SYNTAX = "use [name], [name(regex)], [[name]], [_], [...name], [...name+], [[...name]] or [...]"


class SegmentKind(enum.IntEnum):
    """What a segment matches; at one position, routes register in this order so
    the most specific is tried first."""

    STATIC = 0
    MIXED = 1  # text with parameters inside: post-[id].json
    REGEX = 2
    PLAIN = 3  # [id], [[id]], [_]
    REST = 4  # every catch-all


@attrs.frozen
class Param:
    """One parameter inside a segment. ``name=None``: an unnamed wildcard."""

    name: str | None
    regex: str | None  # None: one segment, aiohttp's default


@attrs.frozen
class Segment:
    """One path segment parsed from a file or folder name."""

    source: Path
    spelling: str
    kind: SegmentKind
    parts: tuple[str | Param, ...]
    optional: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parts if isinstance(p, Param) and p.name is not None)

    @property
    def shape(self) -> str:
        """The segment with its parameter names erased: what a request can tell apart."""
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            elif self.kind is SegmentKind.REST:
                out.append("{**}")
            else:
                out.append("{}" if part.regex is None else f"{{:{part.regex}}}")
        return "".join(out)


@attrs.frozen
class ScannedRoute:
    """A route file: its URL segments and methods (``("*",)``: any)."""

    file: Path
    segments: tuple[Segment, ...]
    methods: tuple[str, ...]

    def paths(self) -> tuple[str, ...]:
        """The aiohttp paths it registers: two when its last segment is optional."""
        full = aiohttp_path(self.segments)
        if self.segments and self.segments[-1].optional:
            return (aiohttp_path(self.segments[:-1]), full)
        return (full,)

    @property
    def order(self) -> tuple[int, ...]:
        return tuple(segment.kind for segment in self.segments)

    @property
    def is_fallback(self) -> bool:
        """A catch-all at the root: the application's fallback, registered last."""
        return len(self.segments) == 1 and self.segments[0].kind is SegmentKind.REST


@attrs.frozen
class ScannedHook:
    """A ``_middleware`` / ``_error`` file (or a global middleware file), its scope and methods."""

    file: Path
    scope: str
    methods: tuple[str, ...] | None  # None: every method


@attrs.frozen
class ScannedTree:
    routes: tuple[ScannedRoute, ...]
    middleware: tuple[ScannedHook, ...]
    error_handlers: tuple[ScannedHook, ...]


def scan_routes(directory: str | Path) -> ScannedTree:
    """Read a routes folder's names into routes and scoped hooks, in registration order.

    Raises:
        FileNotFoundError: ``directory`` is not a folder.
        RouteConflictError: a name breaks the syntax, or two files cannot both
            be served (the message names both).
    """
    root = _folder(directory, "routes")
    routes: list[ScannedRoute] = []
    middleware: list[ScannedHook] = []
    error_handlers: list[ScannedHook] = []
    for folder, prefix in _walk(root, ()):
        _check_folder(folder, prefix)
        scope = aiohttp_path(prefix)
        # Any-method hooks before method ones in one folder, as Spry orders them.
        for file in sorted(
            folder.glob("*.py"), key=lambda f: (split_method(f.name)[1] != ("*",), f.name)
        ):
            stem, methods = split_method(file.name)
            if stem == "_middleware":
                middleware.append(ScannedHook(file, scope, _hook_methods(methods)))
            elif stem == "_error":
                error_handlers.append(ScannedHook(file, scope, _hook_methods(methods)))
            elif not file.name.startswith(("_", ".")):
                routes.append(_route(file, prefix, stem, methods))
    _check_duplicates(routes)
    # Most specific first; at one path, method files before the any-method file
    # (a request for GET prefers chat.get.py over chat.py, as in Spry).
    routes.sort(
        key=lambda route: (route.is_fallback, route.order, route.paths(), "*" in route.methods)
    )
    return ScannedTree(tuple(routes), tuple(middleware), tuple(error_handlers))


def scan_middleware_folder(directory: str | Path) -> tuple[ScannedHook, ...]:
    """A global ``middleware/`` folder: every ``*.py`` in file-name order, for every route.

    ``01_logger.py`` runs for every method, ``02_auth.get.py`` for GET (and
    HEAD) only. Files starting with ``_`` or ``.`` are helpers; subfolders are
    not read.

    Raises:
        FileNotFoundError: ``directory`` is not a folder.
    """
    root = _folder(directory, "middleware")
    hooks = []
    for file in sorted(root.glob("*.py")):
        if file.name.startswith(("_", ".")):
            continue
        hooks.append(ScannedHook(file, "/", _hook_methods(split_method(file.name)[1])))
    return tuple(hooks)


def split_method(file_name: str) -> tuple[str, tuple[str, ...]]:
    """``chat.get.py`` → ``("chat", ("GET",))``; ``chat.py`` → ``("chat", ("*",))``."""
    stem = file_name.removesuffix(".py")
    base, _, suffix = stem.rpartition(".")
    if base and suffix.lower() in METHOD_SUFFIXES:
        return base, (suffix.upper(),)
    return stem, ("*",)


def aiohttp_path(segments: tuple[Segment, ...]) -> str:
    """The aiohttp path of ``segments``; unnamed wildcards get hidden, numbered names."""
    texts = []
    hidden = 0
    for segment in segments:
        text = []
        for part in segment.parts:
            if isinstance(part, str):
                text.append(part)
                continue
            name = part.name
            if name is None:
                name = f"{HIDDEN_PREFIX}{hidden}"
                hidden += 1
            text.append(f"{{{name}}}" if part.regex is None else f"{{{name}:{part.regex}}}")
        texts.append("".join(text))
    return "/" + "/".join(texts)


def path_shape(path: str) -> str:
    """An aiohttp path with its parameter names erased: ``/u/{id}`` → ``/u/{``."""
    return _PLACEHOLDER.sub("{", path)


def parse_segment(source: Path, name: str) -> Segment:
    """Parse one file or folder name (without ``.py`` and method suffix).

    Raises:
        RouteConflictError: the brackets break the syntax, or a regex does not compile.
    """
    if name == "[_]":
        return Segment(source, name, SegmentKind.PLAIN, (Param(None, None),))
    if name == "[...]":
        return Segment(source, name, SegmentKind.REST, (Param(None, ".+"),))
    if match := _WHOLE["optional"].match(name):
        return Segment(source, name, SegmentKind.PLAIN, (Param(match["name"], None),), True)
    if match := _WHOLE["optional_rest"].match(name):
        return Segment(source, name, SegmentKind.REST, (Param(match["name"], ".+"),), True)
    if match := _WHOLE["rest"].match(name):
        return Segment(source, name, SegmentKind.REST, (Param(match["name"], ".+"),))
    parts = tuple(_tokens(source, name))
    params = [part for part in parts if isinstance(part, Param)]
    if not params:
        return Segment(source, name, SegmentKind.STATIC, parts)
    if len(parts) > 1:
        return Segment(source, name, SegmentKind.MIXED, parts)
    kind = SegmentKind.PLAIN if params[0].regex is None else SegmentKind.REGEX
    return Segment(source, name, kind, parts)


def _tokens(source: Path, name: str) -> Iterator[str | Param]:
    """Literal text and ``[name]`` / ``[name(regex)]`` parameters, left to right."""
    i = 0
    previous_was_param = False
    while i < len(name):
        if name[i] != "[":
            end = name.find("[", i)
            end = len(name) if end < 0 else end
            literal = name[i:end]
            if any(c in literal for c in "]{}"):
                raise RouteConflictError(f"{source}: {name!r} is not a valid segment; {_SYNTAX}")
            yield literal
            i = end
            previous_was_param = False
            continue
        match = re.compile(_NAME).match(name, i + 1)
        if match is None:
            raise RouteConflictError(f"{source}: {name!r} is not a valid segment; {_SYNTAX}")
        param_name, i = match.group(), match.end()
        regex = None
        if i < len(name) and name[i] == "(":
            regex, i = _balanced(source, name, i)
        if i >= len(name) or name[i] != "]":
            raise RouteConflictError(f"{source}: {name!r} is not a valid segment; {_SYNTAX}")
        i += 1
        if previous_was_param:
            raise RouteConflictError(
                f"{source}: {name!r} puts two parameters side by side, so no request can tell "
                "where one ends; separate them with text, as in [name].[ext]"
            )
        previous_was_param = True
        yield Param(param_name, regex)


def _balanced(source: Path, name: str, start: int) -> tuple[str, int]:
    """The regex inside ``(...)`` starting at ``start``, and the index after its ``)``."""
    depth = 0
    i = start
    while i < len(name):
        c = name[i]
        if c == "\\":
            i += 2
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                regex = name[start + 1 : i]
                try:
                    compiled = re.compile(regex)
                except re.error as exc:
                    raise RouteConflictError(f"{source}: invalid regex {regex!r}: {exc}") from None
                if not regex or compiled.groups:
                    raise RouteConflictError(
                        f"{source}: regex {regex!r} must be non-empty and use (?:...) instead of "
                        "capturing groups"
                    )
                return regex, i + 1
        i += 1
    raise RouteConflictError(f"{source}: invalid regex in {name!r}: unbalanced parenthesis")


def _folder(directory: str | Path, what: str) -> Path:
    root = Path(directory).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"{what} folder {str(directory)!r} does not exist ({root})")
    return root


def _walk(folder: Path, prefix: tuple[Segment, ...]) -> Iterator[tuple[Path, tuple[Segment, ...]]]:
    """Folders shallow first, each with the segments leading to it."""
    yield folder, prefix
    for child in sorted(folder.iterdir()):
        if child.is_dir() and not child.name.startswith(("_", ".")):
            segment = parse_segment(child, child.name)
            if segment.kind is SegmentKind.REST:
                _check_catch_all_folder(child)
            if segment.optional:
                raise RouteConflictError(
                    f"{child}: an optional {child.name} must be the last segment: make it a "
                    "file, not a folder"
                )
            yield from _walk(child, (*prefix, segment))


def _check_catch_all_folder(folder: Path) -> None:
    """A catch-all folder holds only ``index`` files: it must stay the last segment."""
    for child in sorted(folder.iterdir()):
        if child.name.startswith(".") or (child.is_file() and child.suffix != ".py"):
            continue
        if child.is_file() and split_method(child.name)[0] == "index":
            continue
        raise RouteConflictError(
            f"{folder} and {child}: a catch-all {folder.name} must be the last segment, so its "
            "folder may hold only index.py (or index.<method>.py); move the file out or make "
            "the catch-all a file"
        )


def _route(
    file: Path, prefix: tuple[Segment, ...], stem: str, methods: tuple[str, ...]
) -> ScannedRoute:
    segments = prefix if stem == "index" else (*prefix, parse_segment(file, stem))
    seen: dict[str, Segment] = {}
    for segment in segments:
        for name in segment.names:
            if name in seen:
                first = seen[name].source
                raise RouteConflictError(
                    f"{first} and {file} both name the parameter {name!r} in one route; "
                    "rename one of them"
                )
            seen[name] = segment
    return ScannedRoute(file, segments, methods)


def _hook_methods(methods: tuple[str, ...]) -> tuple[str, ...] | None:
    return None if methods == ("*",) else methods


def _check_folder(folder: Path, prefix: tuple[Segment, ...]) -> None:
    """In one folder: one parameter name per shape, and one catch-all spelling."""
    by_shape: dict[str, Segment] = {}
    catch_all: Segment | None = None
    for child in sorted(folder.iterdir()):
        if child.name.startswith(("_", ".")) or not (child.is_dir() or child.suffix == ".py"):
            continue
        name = child.name if child.is_dir() else split_method(child.name)[0]
        if name == "index":
            continue
        segment = parse_segment(child, name)
        if segment.kind is SegmentKind.STATIC:
            continue
        if segment.kind is SegmentKind.REST:
            if catch_all is not None and catch_all.spelling != segment.spelling:
                raise RouteConflictError(
                    f"{catch_all.source} and {child} are two different catch-alls in one folder "
                    f"({catch_all.spelling} vs {segment.spelling}); keep one"
                )
            catch_all = catch_all or segment
            continue
        other = by_shape.setdefault(segment.shape, segment)
        if other.names != segment.names:
            raise RouteConflictError(
                f"{other.source} and {child} both match {aiohttp_path((*prefix, segment))!r} "
                f"with different parameter names ({', '.join(other.names) or 'unnamed'} vs "
                f"{', '.join(segment.names) or 'unnamed'}); use one name per folder"
            )


def _check_duplicates(routes: list[ScannedRoute]) -> None:
    """Refuse two files serving one method on one path. An any-method file and method
    files on one path are fine: a request takes its method's file, else the any-method one."""
    by_shape: dict[str, list[ScannedRoute]] = {}
    for route in routes:
        for path in route.paths():
            shape = path_shape(path)
            for other in by_shape.get(shape, []):
                methods = {*route.methods, *other.methods}
                if len(methods) < len(route.methods) + len(other.methods):
                    raise RouteConflictError(
                        f"{other.file} and {route.file} both serve "
                        f"{'/'.join(sorted(methods))} {path}"
                    )
            by_shape.setdefault(shape, []).append(route)
