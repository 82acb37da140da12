"""Spry's routing tests (test/routing_test.dart), ported case by case, over real requests.

Spry tests its router tables directly; here each case is a routes/ tree
served by a real aiohttp server, so the port proves what a client sees.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from aiohttp_spry import Spry

from .conftest import ClientFactory


def routes(root: Path, files: dict[str, str]) -> Path:
    folder = root / "routes"
    for name, source in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return folder


def says(value: str) -> str:
    return f"def handler(event):\n    return {value!r}\n"


def tagging(tag: str) -> str:
    """A middleware that appends ``tag`` to ``event.locals["trace"]``."""
    return textwrap.dedent(f"""
        async def middleware(event, next):
            event.locals.setdefault("trace", []).append({tag!r})
            response = await next()
            return response
    """)


TRACE_HANDLER = "def handler(event):\n    return {'trace': event.locals.get('trace', [])}\n"


def failing_with(tag: str) -> str:
    return f"def on_error(error, event):\n    return {{'handled_by': {tag!r}}}\n"


async def text(client: Any, method: str, path: str) -> tuple[int, str]:
    resp = await client.request(method, path)
    return resp.status, await resp.text()


async def test_any_method_file_answers_every_method(tmp_path: Path, serve: ClientFactory) -> None:
    """Spry case: registers any-method handlers into the any bucket."""
    client = await serve(Spry(routes=routes(tmp_path, {"about.py": says("any")})))
    assert await text(client, "GET", "/about") == (200, "any")
    assert await text(client, "DELETE", "/about") == (200, "any")


async def test_method_files_answer_their_methods(tmp_path: Path, serve: ClientFactory) -> None:
    """Spry case: registers method-specific handlers into method buckets."""
    tree = routes(tmp_path, {"about.get.py": says("get"), "about.post.py": says("post")})
    client = await serve(Spry(routes=tree))
    assert await text(client, "GET", "/about") == (200, "get")
    assert await text(client, "POST", "/about") == (200, "post")
    resp = await client.put("/about")
    assert resp.status == 405
    assert set(resp.headers["Allow"].split(",")) == {"GET", "HEAD", "POST"}


async def test_any_and_method_files_share_one_path(tmp_path: Path, serve: ClientFactory) -> None:
    """Spry cases: keeps any and method-specific handlers at the same path; prefers
    exact method matches; falls back to any-method handlers for non-HEAD requests."""
    tree = routes(tmp_path, {"about.py": says("any"), "about.get.py": says("get")})
    client = await serve(Spry(routes=tree))
    assert await text(client, "GET", "/about") == (200, "get")
    assert await text(client, "POST", "/about") == (200, "any")


async def test_head_falls_back_to_get(tmp_path: Path, serve: ClientFactory) -> None:
    """Spry case: falls back from HEAD to GET (also over an any-method file)."""
    tree = routes(
        tmp_path,
        {
            "about.get.py": "def handler(event):\n    return {'method': event.method}\n",
            "both.py": says("any"),
            "both.get.py": "def handler(event):\n    return {'from': 'get'}\n",
        },
    )
    client = await serve(Spry(routes=tree))
    resp = await client.head("/about")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    assert int(resp.headers["Content-Length"]) == len(b'{"method": "HEAD"}')
    assert await resp.read() == b""
    resp = await client.head("/both")
    assert int(resp.headers["Content-Length"]) == len(b'{"from": "get"}')


async def test_head_file_wins_over_get(tmp_path: Path, serve: ClientFactory) -> None:
    """Spry case: prefers HEAD over GET for HEAD requests."""
    head = (
        "from aiohttp import web\n\n"
        "def handler(event):\n    return web.Response(headers={'X-From': 'head'})\n"
    )
    for order in ("head-first", "get-first"):
        tree = routes(tmp_path / order, {"about.get.py": says("get"), "about.head.py": head})
        client = await serve(Spry(routes=tree))
        resp = await client.head("/about")
        assert (resp.status, resp.headers.get("X-From")) == (200, "head")
        assert await text(client, "GET", "/about") == (200, "get")


async def test_no_matching_path_is_404(tmp_path: Path, serve: ClientFactory) -> None:
    """Spry case: returns null when no path matches."""
    client = await serve(Spry(routes=routes(tmp_path, {"about.get.py": says("get")})))
    assert (await client.get("/missing")).status == 404


async def test_matching_is_case_sensitive(tmp_path: Path, serve: ClientFactory) -> None:
    """Spry case: preserves case-sensitive matching."""
    client = await serve(Spry(routes=routes(tmp_path, {"Users/[id].get.py": says("user")})))
    assert await text(client, "GET", "/Users/42") == (200, "user")
    assert (await client.get("/users/42")).status == 404


async def test_scoped_middleware_runs_outer_to_inner(tmp_path: Path, serve: ClientFactory) -> None:
    """Spry case: matchAll returns outer-to-inner scopes (global, /api, /api/users)."""
    tree = routes(
        tmp_path,
        {
            "_middleware.py": tagging("global"),
            "api/_middleware.py": tagging("api"),
            "api/users/_middleware.py": tagging("users"),
            "api/users/[id].py": TRACE_HANDLER,
        },
    )
    client = await serve(Spry(routes=tree))
    resp = await client.get("/api/users/1")
    assert (await resp.json())["trace"] == ["global", "api", "users"]


async def test_any_method_middleware_runs_before_method_middleware(
    tmp_path: Path, serve: ClientFactory
) -> None:
    """Spry case: matchAll keeps any-method before method-specific at same scope."""
    tree = routes(
        tmp_path,
        {
            "api/_middleware.get.py": tagging("get"),
            "api/_middleware.py": tagging("any"),
            "api/demo.py": TRACE_HANDLER,
        },
    )
    client = await serve(Spry(routes=tree))
    assert (await (await client.get("/api/demo")).json())["trace"] == ["any", "get"]
    assert (await (await client.post("/api/demo")).json())["trace"] == ["any"]
    assert (await client.head("/api/demo")).status == 200  # .get covers HEAD


async def test_several_middlewares_in_one_scope_keep_their_order(
    tmp_path: Path, serve: ClientFactory
) -> None:
    """Spry case: keeps multiple handlers at the same scope and method."""
    tree = routes(
        tmp_path,
        {
            "_middleware.py": textwrap.dedent("""
                async def first(event, next):
                    event.locals.setdefault("trace", []).append("first")
                    return await next()

                async def second(event, next):
                    event.locals.setdefault("trace", []).append("second")
                    return await next()

                middleware = [first, second]
            """),
            "demo.py": TRACE_HANDLER,
        },
    )
    client = await serve(Spry(routes=tree))
    assert (await (await client.get("/demo")).json())["trace"] == ["first", "second"]


async def test_error_handlers_are_tried_inner_to_outer(
    tmp_path: Path, serve: ClientFactory
) -> None:
    """Spry cases: matchAll returns candidates from outer-to-inner specificity; error
    ordering returns candidates from inner to outer."""
    boom = "def handler(event):\n    raise ValueError('boom')\n"
    passing = "def on_error(error, event):\n    event.locals.setdefault('seen', []).append({!r})\n"
    tree = routes(
        tmp_path,
        {
            "_error.py": (
                "def on_error(error, event):\n"
                "    return {'seen': event.locals.get('seen', []) + ['global']}\n"
            ),
            "api/_error.py": passing.format("api"),
            "api/users/_error.py": passing.format("user"),
            "api/users/[id].py": boom,
        },
    )
    client = await serve(Spry(routes=tree))
    resp = await client.get("/api/users/1")
    assert await resp.json() == {"seen": ["user", "api", "global"]}


async def test_method_error_handler_is_tried_before_any_method_one(
    tmp_path: Path, serve: ClientFactory
) -> None:
    """Spry cases: matchAll includes any-method and exact-method candidates; prefers
    exact method before any-method at the same scope."""
    tree = routes(
        tmp_path,
        {
            "api/_error.py": failing_with("any"),
            "api/_error.get.py": failing_with("get"),
            "api/demo.py": "def handler(event):\n    raise ValueError('boom')\n",
        },
    )
    client = await serve(Spry(routes=tree))
    assert await (await client.get("/api/demo")).json() == {"handled_by": "get"}
    assert await (await client.post("/api/demo")).json() == {"handled_by": "any"}
    # Unknown paths under the scope reach the method's handler too.
    assert await (await client.get("/api/nothing")).json() == {"handled_by": "get"}
    assert await (await client.delete("/api/nothing")).json() == {"handled_by": "any"}
