"""Spry's scanner tests (test/scanner_test.dart, test/fixtures/scanner/), ported case by case.

Each test's docstring names the Spry case it mirrors. The fixtures are rebuilt
here as Python trees with the same file names (``.dart`` → ``.py``).
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from aiohttp_spry import RouteConflictError, Spry
from aiohttp_spry.file_routes import load_middleware_folder
from aiohttp_spry.hooks import load_hooks
from aiohttp_spry.scanner import scan_middleware_folder, scan_routes

HANDLER = "def handler(event):\n    return 'ok'\n"
MIDDLEWARE = "async def middleware(event, next):\n    return await next()\n"
ON_ERROR = "def on_error(error, event):\n    return 'error'\n"


def tree(root: Path, files: dict[str, str]) -> Path:
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return root


COMPLETE = {
    "hooks.py": "async def on_start(app):\n    pass\n",
    "middleware/01_logger.py": MIDDLEWARE,
    "middleware/02_auth.get.py": MIDDLEWARE,
    "public/hello.txt": "hello\n",
    "routes/[...slug].py": HANDLER,
    "routes/_middleware.py": MIDDLEWARE,
    "routes/about.get.py": HANDLER,
    "routes/index.py": HANDLER,
    "routes/users/[id].py": HANDLER,
    "routes/users/_error.py": ON_ERROR,
    "routes/users/_error.get.py": ON_ERROR,
    "routes/users/_middleware.get.py": MIDDLEWARE,
}


def test_discovers_routes_middleware_errors_hooks_and_fallback(tmp_path: Path) -> None:
    """Spry case: discovers routes, middleware, errors, hooks and fallback."""
    root = tree(tmp_path, COMPLETE)
    hooks = load_hooks(root / "hooks.py")
    assert (hooks.on_start is not None, hooks.on_stop, hooks.on_error) == (True, None, None)
    assert [
        (h.scope, h.methods, h.file.name) for h in scan_middleware_folder(root / "middleware")
    ] == [
        ("/", None, "01_logger.py"),
        ("/", ("GET",), "02_auth.get.py"),
    ]
    scanned = scan_routes(root / "routes")
    routes = {(r.paths(), r.methods, r.file.name) for r in scanned.routes}
    assert {
        (("/",), ("*",), "index.py"),
        (("/about",), ("GET",), "about.get.py"),
        (("/users/{id}",), ("*",), "[id].py"),
    } <= routes
    assert [(h.scope, h.methods, h.file.name) for h in scanned.middleware] == [
        ("/", None, "_middleware.py"),
        ("/users", ("GET",), "_middleware.get.py"),
    ]
    assert [(h.scope, h.methods, h.file.name) for h in scanned.error_handlers] == [
        ("/users", None, "_error.py"),
        ("/users", ("GET",), "_error.get.py"),
    ]
    fallback = scanned.routes[-1]
    assert (fallback.is_fallback, fallback.paths(), fallback.file.name) == (
        True,
        ("/{slug:.+}",),
        "[...slug].py",
    )
    assert [r for r in scanned.routes if r.is_fallback] == [fallback]


def test_preserves_deterministic_route_order(tmp_path: Path) -> None:
    """Spry case: preserves deterministic recursive route discovery order.

    Spry lists files in discovery order; here the order is the registration
    order (most specific first, the fallback last), the same on every scan."""
    root = tree(tmp_path, COMPLETE)
    first = [
        r.file.relative_to(root / "routes").as_posix() for r in scan_routes(root / "routes").routes
    ]
    again = [
        r.file.relative_to(root / "routes").as_posix() for r in scan_routes(root / "routes").routes
    ]
    assert first == again == ["index.py", "about.get.py", "users/[id].py", "[...slug].py"]


def test_supports_expressive_route_segment_syntax(tmp_path: Path) -> None:
    """Spry case: supports expressive route segment syntax."""
    root = tree(
        tmp_path,
        {
            "routes/archive/[[...rest]].py": HANDLER,
            "routes/assets/[...path+].py": HANDLER,
            "routes/docs/[[section]].py": HANDLER,
            "routes/files/[name].[ext].py": HANDLER,
            "routes/posts/post-[id].json.get.py": HANDLER,
            "routes/users/[_].py": HANDLER,
            "routes/users/[id([0-9]+)].py": HANDLER,
        },
    )
    routes = {(r.paths(), r.methods, r.file.name) for r in scan_routes(root / "routes").routes}
    assert routes == {
        (("/users/{__spry_0}",), ("*",), "[_].py"),
        (("/users/{id:[0-9]+}",), ("*",), "[id([0-9]+)].py"),
        (("/files/{name}.{ext}",), ("*",), "[name].[ext].py"),
        (("/posts/post-{id}.json",), ("GET",), "post-[id].json.get.py"),
        (("/docs", "/docs/{section}"), ("*",), "[[section]].py"),
        (("/assets/{path:.+}",), ("*",), "[...path+].py"),
        (("/archive", "/archive/{rest:.+}"), ("*",), "[[...rest]].py"),
    }


METHODS = ("get", "post", "put", "patch", "delete", "head", "options")


def test_supports_all_method_suffixes_for_global_and_scoped_middleware(tmp_path: Path) -> None:
    """Spry case: supports all method suffixes for global and scoped middleware."""
    files = {f"middleware/0{i}_auth.{m}.py": MIDDLEWARE for i, m in enumerate(METHODS, 1)}
    files |= {f"routes/admin/_middleware.{m}.py": MIDDLEWARE for m in METHODS}
    files |= {"routes/admin/index.py": HANDLER, "routes/index.py": HANDLER}
    root = tree(tmp_path, files)
    global_ = scan_middleware_folder(root / "middleware")
    assert [(h.scope, h.methods, h.file.name) for h in global_] == [
        ("/", (m.upper(),), f"0{i}_auth.{m}.py") for i, m in enumerate(METHODS, 1)
    ]
    scoped = scan_routes(root / "routes").middleware
    assert {(h.scope, h.methods, h.file.name) for h in scoped} == {
        ("/admin", (m.upper(),), f"_middleware.{m}.py") for m in METHODS
    }
    assert len(load_middleware_folder(root / "middleware")) == 7


def test_ignores_hook_names_in_comments_strings_and_method_calls(tmp_path: Path) -> None:
    """Spry case: ignores hook names in comments, strings and method calls."""
    root = tree(
        tmp_path,
        {
            "hooks.py": """
                class Lifecycle:
                    async def on_start(self, context):
                        pass

                async def boot():
                    # TODO: wire on_start(context) later.
                    message = "on_stop("
                    await Lifecycle().on_start(object())
                    ''' on_error(error, event) '''
                    print(message)
            """,
            "routes/index.py": HANDLER,
        },
    )
    hooks = load_hooks(root / "hooks.py")
    assert (hooks.on_start, hooks.on_stop, hooks.on_error) == (None, None, None)


@pytest.mark.parametrize(
    ("case", "files", "names"),
    [
        (
            "rejects duplicate normalized routes",
            {"foo.py": HANDLER, "foo/index.py": HANDLER},
            ["foo.py", "foo/index.py"],
        ),
        (
            "rejects duplicate param names inside one route (users/[id]/[id])",
            {"users/[id]/[id].py": HANDLER},
            ["users/[id]", "[id].py"],
        ),
        (
            "rejects duplicate param names inside one route (files/[name].[name])",
            {"files/[name].[name].py": HANDLER},
            ["[name].[name].py"],
        ),
        (
            "rejects param-name drift on the same normalized route",
            {"users/[id].py": HANDLER, "users/[userId].get.py": HANDLER},
            ["[id].py", "[userId].get.py"],
        ),
        (
            "rejects conflicting catch-all files in the same directory",
            {"[...].py": HANDLER, "[...slug].py": HANDLER},
            ["[...].py", "[...slug].py"],
        ),
        (
            "rejects named catch-all param-name drift",
            {"files/[...rest].post.py": HANDLER, "files/[...slug].get.py": HANDLER},
            ["[...rest].post.py", "[...slug].get.py"],
        ),
        (
            "rejects catch-all segments that are not terminal",
            {"[...slug]/tail.py": HANDLER},
            ["[...slug]", "tail.py"],
        ),
    ],
    ids=lambda value: value if isinstance(value, str) and " " in value else "",
)
def test_scanner_rules_refuse_naming_both_files(
    tmp_path: Path, case: str, files: dict[str, str], names: list[str]
) -> None:
    """Spry case: the scanner's rejections (see ``case``), each naming the files involved."""
    routes = tree(tmp_path / "routes", files)
    with pytest.raises(RouteConflictError) as refused:
        scan_routes(routes)
    for name in names:
        assert name in str(refused.value), (case, str(refused.value))
    with pytest.raises(RouteConflictError):
        Spry(routes=routes)  # and so is the extension, before anything is served


def test_preserves_literal_index_directories_for_scoped_handlers(tmp_path: Path) -> None:
    """Spry case: preserves literal index directories for scoped handlers."""
    routes = tree(
        tmp_path / "routes", {"index/_middleware.py": MIDDLEWARE, "index/_error.py": ON_ERROR}
    )
    scanned = scan_routes(routes)
    assert [(h.scope, h.file.name) for h in scanned.middleware] == [("/index", "_middleware.py")]
    assert [(h.scope, h.file.name) for h in scanned.error_handlers] == [("/index", "_error.py")]


def test_allows_catch_all_directories_when_index_is_terminal(tmp_path: Path) -> None:
    """Spry case: allows catch-all directories when index.dart is terminal."""
    routes = tree(tmp_path / "routes", {"docs/[...slug]/index.py": HANDLER})
    assert [(r.paths(), r.file.name) for r in scan_routes(routes).routes] == [
        (("/docs/{slug:.+}",), "index.py")
    ]


@pytest.mark.parametrize(
    ("case", "files", "message"),
    [
        (
            "rejects invalid route handler signatures during scan",
            {"routes/index.py": "def handler():\n    return 'bad'\n"},
            "'handler' has the signature handler()",
        ),
        (
            "rejects invalid middleware signatures during scan",
            {"routes/_middleware.py": "def middleware(event, next):\n    return next()\n"},
            "must be an async function",
        ),
        (
            "rejects invalid error handler signatures during scan",
            {"routes/_error.py": "def on_error(error):\n    return 'bad'\n"},
            "cannot be called as on_error(error, event)",
        ),
        (
            "rejects invalid hooks signatures during scan",
            {"routes/index.py": HANDLER, "hooks.py": "async def on_start():\n    pass\n"},
            "cannot be called as on_start(app)",
        ),
    ],
    ids=["handler", "middleware", "error", "hooks"],
)
def test_rejects_invalid_signatures_naming_the_file(
    tmp_path: Path, case: str, files: dict[str, str], message: str
) -> None:
    """Spry case: rejects invalid route handler / middleware / error handler / hooks
    signatures during scan."""
    root = tree(tmp_path, files)
    with pytest.raises(RouteConflictError, match=re.escape(message)) as refused:
        Spry().load_project(root)
    assert str(root) in str(refused.value), case


def test_accepts_a_handler_bound_to_a_variable(tmp_path: Path) -> None:
    """Spry case: valid_handler_alias (a handler bound to a variable, not a def)."""
    root = tree(
        tmp_path,
        {
            "routes/index.py": "handler = lambda event: 'ok'\n",
            "routes/other.py": """
                class Handler:
                    def __call__(self, event):
                        return "ok"

                handler = Handler()
            """,
        },
    )
    Spry().load_project(root)
