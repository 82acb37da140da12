"""File routes: a Spry-style routes/ folder becomes routes, scoped middleware and error handlers."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from aiohttp_spry import RouteConflictError, Spry

from .conftest import ClientFactory

ECHO_PATH = (
    'def handler(event):\n    return {"file": __file__.rsplit("/routes/", 1)[1], '
    '"params": dict(event.params), "method": event.method}\n'
)


def make_tree(root: Path, files: dict[str, str]) -> Path:
    routes = root / "routes"
    for name, source in files.items():
        path = routes / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return routes


async def get_json(client: Any, path: str, method: str = "GET") -> tuple[int, Any]:
    resp = await client.request(method, path)
    body = await resp.json() if resp.content_type == "application/json" else await resp.text()
    return resp.status, body


async def test_file_names_map_to_paths_methods_and_parameters(
    tmp_path: Path, serve: ClientFactory
) -> None:
    routes = make_tree(
        tmp_path,
        {
            "index.py": ECHO_PATH,
            "chat.get.py": ECHO_PATH,
            "users/index.py": ECHO_PATH,
            "users/me.py": ECHO_PATH,
            "users/[id].py": ECHO_PATH,
            "users/[id]/posts.post.py": ECHO_PATH,
            "items/[id([0-9]+)].py": ECHO_PATH,
            "docs/[...slug].py": ECHO_PATH,
            "_helpers.py": "raise AssertionError('private files are not loaded')\n",
            "_private/secret.py": "raise AssertionError('private folders are not loaded')\n",
        },
    )
    client = await serve(Spry(routes=routes))

    assert await get_json(client, "/") == (200, {"file": "index.py", "params": {}, "method": "GET"})
    status, body = await get_json(client, "/", "DELETE")
    assert (status, body["method"]) == (200, "DELETE")  # no suffix: any method
    assert (await get_json(client, "/chat"))[1]["file"] == "chat.get.py"
    assert (await get_json(client, "/chat", "POST"))[0] == 405
    assert (await get_json(client, "/users"))[1]["file"] == "users/index.py"
    assert (await get_json(client, "/users/me"))[1]["file"] == "users/me.py"
    assert (await get_json(client, "/users/42"))[1] == {
        "file": "users/[id].py",
        "params": {"id": "42"},
        "method": "GET",
    }
    assert (await get_json(client, "/users/42/posts", "POST"))[1]["params"] == {"id": "42"}
    assert (await get_json(client, "/items/7"))[1]["params"] == {"id": "7"}
    assert (await get_json(client, "/items/x"))[0] == 404
    assert (await get_json(client, "/docs/a/b/c"))[1]["params"] == {"slug": "a/b/c"}
    assert (await get_json(client, "/_helpers"))[0] == 404


async def test_folder_middleware_and_error_handler_scope_to_their_folder(
    tmp_path: Path, serve: ClientFactory
) -> None:
    routes = make_tree(
        tmp_path,
        {
            "open.py": "def handler(event):\n    return 'open'\n",
            "admin/_middleware.py": """
                from aiohttp_spry import HTTPError

                async def guard(event, next):
                    if event.query.get("token") != "t":
                        raise HTTPError(401)
                    return await next()

                middleware = guard
            """,
            "admin/_error.py": """
                def on_error(error, event):
                    return {"admin_error": getattr(error, "status", 500)}
            """,
            "admin/panel.py": "def handler(event):\n    return 'panel'\n",
        },
    )
    client = await serve(Spry(routes=routes))
    assert await get_json(client, "/open") == (200, "open")
    assert await get_json(client, "/admin/panel") == (200, {"admin_error": 401})
    assert await get_json(client, "/admin/panel?token=t") == (200, "panel")
    # Unknown paths under the scope reach its _error.py too.
    assert await get_json(client, "/admin/nothing") == (200, {"admin_error": 404})
    assert (await get_json(client, "/nothing"))[0] == 404


async def test_route_file_may_define_its_own_middleware_and_on_error(
    tmp_path: Path, serve: ClientFactory
) -> None:
    routes = make_tree(
        tmp_path,
        {
            "one.py": """
                async def tag(event, next):
                    response = await next()
                    response.headers["X-Tag"] = "one"
                    return response

                middleware = [tag]

                def on_error(error, event):
                    return "handled locally"

                def handler(event):
                    if "fail" in event.query:
                        raise ValueError("x")
                    return "one"
            """,
        },
    )
    client = await serve(Spry(routes=routes))
    resp = await client.get("/one")
    assert (await resp.text(), resp.headers["X-Tag"]) == ("one", "one")
    assert await (await client.get("/one?fail")).text() == "handled locally"


@pytest.mark.parametrize(
    ("files", "names"),
    [
        (
            {"chat.get.py": ECHO_PATH, "chat/index.get.py": ECHO_PATH},
            ["chat.get.py", "index.get.py"],
        ),
        ({"foo.py": ECHO_PATH, "foo/index.py": ECHO_PATH}, ["foo.py", "foo/index.py"]),
        ({"a/[...x].py": ECHO_PATH, "a/[...y].py": ECHO_PATH}, ["[...x].py", "[...y].py"]),
        ({"u/[id].py": ECHO_PATH, "u/[uid]/posts.py": ECHO_PATH}, ["[id].py", "[uid]"]),
        ({"u/[id].get.py": ECHO_PATH, "u/[uid].post.py": ECHO_PATH}, ["[id].get.py", "[uid]"]),
    ],
    ids=["same-route", "file-vs-index", "two-catch-alls", "param-names", "param-names-methods"],
)
def test_conflicts_are_refused_naming_both_files(
    tmp_path: Path, files: dict[str, str], names: list[str]
) -> None:
    routes = make_tree(tmp_path, files)
    with pytest.raises(RouteConflictError) as refused:
        Spry(routes=routes)
    for name in names:
        assert name in str(refused.value)


def test_distinct_methods_on_one_path_are_fine(tmp_path: Path) -> None:
    routes = make_tree(tmp_path, {"chat.get.py": ECHO_PATH, "chat.post.py": ECHO_PATH})
    Spry(routes=routes)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"nohandler.py": "x = 1\n"}, "must define 'handler'"),
        ({"_middleware.py": "x = 1\n"}, "must define 'middleware'"),
        ({"_error.py": "on_error = 3\n"}, "'on_error' must be callable"),
        ({"[bad name].py": ECHO_PATH}, "not a valid segment"),
        ({"[id(()].py": ECHO_PATH}, "invalid regex"),
        ({"[...rest]/x.py": ECHO_PATH}, "must be the last segment"),
        ({"[[id]]/x.py": ECHO_PATH}, "must be the last segment"),
        ({"[a][b].py": ECHO_PATH}, "two parameters side by side"),
    ],
)
def test_malformed_files_are_refused_with_the_file_named(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    routes = make_tree(tmp_path, files)
    with pytest.raises(RouteConflictError, match=message) as refused:
        Spry(routes=routes)
    assert str(routes) in str(refused.value)


def test_sync_folder_middleware_is_refused_naming_the_file(tmp_path: Path) -> None:
    routes = make_tree(tmp_path, {"_middleware.py": "def middleware(event, next):\n    pass\n"})
    with pytest.raises(RouteConflictError, match="must be an async function") as refused:
        Spry(routes=routes)
    assert str(routes / "_middleware.py") in str(refused.value)


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Spry(routes=tmp_path / "nope")


async def test_load_routes_after_init_app_registers_routes(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    routes = make_tree(tmp_path, {"late.py": "def handler(event):\n    return 'late'\n"})
    app = web.Application()
    spry = Spry(app)
    spry.load_routes(routes)
    client = await aiohttp_client(app)
    assert await (await client.get("/late")).text() == "late"
