"""A Spry project folder: expressive names served, the root fallback, public/,
middleware/, hooks.py, params and locals, HEAD, and method-scoped hooks."""

from __future__ import annotations

import logging
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from aiohttp_spry import Event, HTTPError, Next, RouteConflictError, Spry
from aiohttp_spry.project import ProjectConfig, create_app, read_config

from .conftest import ClientFactory

ECHO = (
    "def handler(event):\n"
    '    return {"file": __file__.rsplit("/routes/", 1)[1], "params": dict(event.params)}\n'
)


def project(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(source, bytes):
            path.write_bytes(source)
        else:
            path.write_text(textwrap.dedent(source))
    return root


async def get(client: Any, path: str, method: str = "GET") -> tuple[int, Any]:
    resp = await client.request(method, path)
    body = await resp.json() if resp.content_type == "application/json" else await resp.text()
    return resp.status, body


async def test_expressive_names_serve_their_paths(tmp_path: Path, serve: ClientFactory) -> None:
    root = project(
        tmp_path,
        {
            "routes/archive/[[...rest]].py": ECHO,
            "routes/assets/[...path+].py": ECHO,
            "routes/docs/[[section]].py": ECHO,
            "routes/files/[name].[ext].py": ECHO,
            "routes/posts/post-[id].json.get.py": ECHO,
            "routes/users/[_].py": ECHO,
            "routes/users/[id([0-9]+)].py": ECHO,
            "routes/any/[...].py": ECHO,
        },
    )
    spry = Spry()
    spry.load_project(root)
    client = await serve(spry)
    assert await get(client, "/archive") == (200, {"file": "archive/[[...rest]].py", "params": {}})
    assert (await get(client, "/archive/2024/05"))[1]["params"] == {"rest": "2024/05"}
    assert (await get(client, "/assets"))[0] == 404  # one or more
    assert (await get(client, "/assets/css/app.css"))[1]["params"] == {"path": "css/app.css"}
    assert (await get(client, "/docs"))[1]["params"] == {}
    assert (await get(client, "/docs/intro"))[1]["params"] == {"section": "intro"}
    assert (await get(client, "/files/report.v2.pdf"))[1]["params"] == {
        "name": "report.v2",
        "ext": "pdf",
    }
    assert (await get(client, "/files/noext"))[0] == 404
    assert (await get(client, "/posts/post-7.json"))[1]["params"] == {"id": "7"}
    assert (await get(client, "/posts/post-7.json", "POST"))[0] == 405
    assert (await get(client, "/users/42"))[1]["file"] == "users/[id([0-9]+)].py"  # regex first
    assert await get(client, "/users/ada") == (200, {"file": "users/[_].py", "params": {}})
    assert await get(client, "/any/a/b") == (200, {"file": "any/[...].py", "params": {}})


async def test_root_catch_all_is_the_fallback(tmp_path: Path, serve: ClientFactory) -> None:
    root = project(
        tmp_path,
        {
            "routes/index.py": ECHO,
            "routes/chat.get.py": ECHO,
            "routes/users/[id].py": ECHO,
            "routes/[...slug].py": ECHO,
            "public/robots.txt": "User-agent: *\n",
        },
    )
    spry = Spry()
    spry.load_project(root)
    client = await serve(spry)
    assert (await get(client, "/"))[1]["file"] == "index.py"
    assert (await get(client, "/chat"))[1]["file"] == "chat.get.py"
    assert (await get(client, "/users/1"))[1]["file"] == "users/[id].py"
    assert await get(client, "/users/1/extra") == (
        200,
        {"file": "[...slug].py", "params": {"slug": "users/1/extra"}},
    )
    # A method no route on the path takes goes to the fallback too.
    assert (await get(client, "/chat", "POST"))[1]["file"] == "[...slug].py"
    assert await get(client, "/robots.txt") == (200, "User-agent: *\n")  # never shadowed


async def test_public_files_are_served_before_routing(tmp_path: Path, serve: ClientFactory) -> None:
    root = project(
        tmp_path,
        {
            "routes/users/[id].py": ECHO,
            "routes/upload/[name].post.py": ECHO,
            "public/hello.txt": "hello\n",
            "public/users/avatar.png": b"\x89PNG\r\n",
            "public/upload/x.txt": "static\n",
            "public/.env": "SECRET=1\n",
            "public/.git/config": "x\n",
        },
    )
    spry = Spry()
    spry.load_project(root)
    client = await serve(spry)
    resp = await client.get("/hello.txt")
    assert (resp.status, resp.content_type, await resp.text()) == (200, "text/plain", "hello\n")
    again = await client.get("/hello.txt", headers={"If-None-Match": resp.headers["ETag"]})
    assert again.status == 304
    head = await client.head("/hello.txt")
    assert (head.status, head.headers["Content-Length"], await head.read()) == (200, "6", b"")
    # A file wins over a route with a parameter (rule 2) ...
    resp = await client.get("/users/avatar.png")
    assert (resp.content_type, await resp.read()) == ("image/png", b"\x89PNG\r\n")
    assert (await get(client, "/users/7"))[1]["file"] == "users/[id].py"
    # ... for GET and HEAD only (rule 1).
    assert (await get(client, "/upload/x.txt", "POST"))[1]["file"] == "upload/[name].post.py"
    assert (await get(client, "/upload/x.txt"))[1] == "static\n"
    # Dot files are never served (rule 4).
    assert (await client.get("/.env")).status == 404
    assert (await client.get("/.git/config")).status == 404
    assert (await client.get("/hello.txt/../.env")).status == 404


def test_public_file_on_a_static_route_is_refused_naming_both(tmp_path: Path) -> None:
    root = project(tmp_path, {"routes/about.get.py": ECHO, "public/about": "x"})
    with pytest.raises(RouteConflictError) as refused:
        Spry().load_project(root)
    assert "about.get.py" in str(refused.value)
    assert str(root / "public" / "about") in str(refused.value)
    # A POST-only route on the same path is fine (rule 1), and so is a decorator
    # route declared later, which is refused the same way.
    spry = Spry()
    spry.load_public(project(tmp_path / "p2", {"public/about": "x"}) / "public")
    spry.route("/about", methods=["POST"])(lambda event: "posted")
    with pytest.raises(RouteConflictError, match="both serve GET /about"):
        spry.route("/about")(lambda event: "x")


async def test_global_middleware_folder_runs_in_file_name_order_before_folders(
    tmp_path: Path, serve: ClientFactory
) -> None:
    def tag(name: str) -> str:
        return (
            "async def middleware(event, next):\n"
            f"    event.locals.setdefault('trace', []).append({name!r})\n"
            "    return await next()\n"
        )

    root = project(
        tmp_path,
        {
            "middleware/02_auth.get.py": tag("auth.get"),
            "middleware/01_logger.py": tag("logger"),
            "middleware/10_last.py": tag("last"),
            "middleware/_helper.py": "raise AssertionError('helpers are not loaded')\n",
            "routes/_middleware.py": tag("routes"),
            "routes/trace.py": "def handler(event):\n    return {'trace': event.locals['trace']}\n",
        },
    )
    spry = Spry()
    spry.load_project(root)
    client = await serve(spry)
    assert (await get(client, "/trace"))[1]["trace"] == ["logger", "auth.get", "last", "routes"]
    assert (await get(client, "/trace", "POST"))[1]["trace"] == ["logger", "last", "routes"]


def test_middleware_folder_file_without_middleware_is_refused(tmp_path: Path) -> None:
    root = project(tmp_path, {"middleware/01_x.py": "x = 1\n", "routes/index.py": ECHO})
    with pytest.raises(RouteConflictError, match=r"01_x\.py must define 'middleware'"):
        Spry().load_project(root)


async def test_hooks_start_stop_and_error(tmp_path: Path, aiohttp_client: Any) -> None:
    log = tmp_path / "hooks.log"
    root = project(
        tmp_path,
        {
            "hooks.py": f"""
                LOG = {str(log)!r}

                def write(line):
                    with open(LOG, "a") as f:
                        f.write(line + "\\n")

                async def on_start(app):
                    write("start")

                def on_stop(app):
                    write("stop")

                def on_error(error, event):
                    write(f"error {{type(error).__name__}}")
                    if isinstance(error, KeyError):
                        return {{"hooks": "handled"}}
                    return None
            """,
            "routes/_error.py": """
                def on_error(error, event):
                    if isinstance(error, LookupError) and not isinstance(error, KeyError):
                        return {"routes_error": "handled"}
                    return None
            """,
            "routes/key.py": "def handler(event):\n    raise KeyError('k')\n",
            "routes/index_error.py": "def handler(event):\n    raise IndexError('i')\n",
            "routes/value.py": "def handler(event):\n    raise ValueError('v')\n",
        },
    )
    client = await aiohttp_client(create_app(root))
    assert log.read_text() == "start\n"
    assert await get(client, "/key") == (200, {"hooks": "handled"})
    assert await get(client, "/index_error") == (200, {"routes_error": "handled"})
    assert (await get(client, "/value"))[0] == 500
    await client.close()
    assert log.read_text() == "start\nerror KeyError\nerror ValueError\nstop\n"


async def test_params_accessors_answer_400_naming_the_parameter(
    tmp_path: Path, serve: ClientFactory
) -> None:
    root = project(
        tmp_path,
        {
            "routes/users/[[id]].get.py": """
                import uuid

                def handler(event):
                    kind = event.query.get("as", "int")
                    if kind == "int":
                        return {"id": event.params.int("id")}
                    if kind == "uuid":
                        return {"id": str(event.params.decode("id", uuid.UUID))}
                    return {"id": event.params.required("id")}
            """,
        },
    )
    spry = Spry()
    spry.load_project(root)
    client = await serve(spry)
    assert await get(client, "/users/42") == (200, {"id": 42})
    assert await get(client, "/users/-3") == (200, {"id": -3})
    assert await get(client, "/users") == (
        400,
        {"error": "missing path parameter 'id'", "parameter": "id"},
    )
    status, body = await get(client, "/users/4x")
    assert (status, body["parameter"], body["value"]) == (400, "id", "4x")
    assert body["error"] == "path parameter 'id' must be an integer, got '4x'"
    assert (await get(client, "/users/%D9%A4"))[0] == 400  # Arabic-Indic 4 is not ASCII
    known = str(uuid.uuid4())
    assert await get(client, f"/users/{known}?as=uuid") == (200, {"id": known})
    status, body = await get(client, "/users/nope?as=uuid")
    assert status == 400
    assert body["error"].startswith("path parameter 'id' must be accepted by UUID: ")
    assert await get(client, "/users/ada?as=text") == (200, {"id": "ada"})


async def test_params_decoder_bug_is_not_a_400(serve: ClientFactory) -> None:
    spry = Spry()

    def broken(text: str) -> int:
        raise RuntimeError("decoder bug")

    @spry.route("/x/{id}")
    def handler(event: Event) -> int:
        return event.params.decode("id", broken)

    client = await serve(spry)
    assert (await client.get("/x/1")).status == 500


async def test_locals_get_set_has_share_values_along_the_chain(serve: ClientFactory) -> None:
    spry = Spry()
    key = object()

    @spry.middleware
    async def auth(event: Event, next: Next) -> web.StreamResponse:
        assert not event.locals.has("user")
        event.locals.set("user", "ada")
        event.locals.set(key, 7)
        return await next()

    @spry.route("/me")
    def me(event: Event) -> dict[str, Any]:
        return {
            "user": event.locals.get("user"),
            "private": event.locals.get(key),
            "missing": event.locals.get("nothing"),
            "has": [event.locals.has("user"), event.locals.has("nothing")],
            "dict": event.locals["user"],
        }

    client = await serve(spry)
    assert await get(client, "/me") == (
        200,
        {"user": "ada", "private": 7, "missing": None, "has": [True, False], "dict": "ada"},
    )


async def test_get_route_answers_head_and_a_websocket_route_gives_405(
    serve: ClientFactory,
) -> None:
    spry = Spry()

    async def session(ws: Any) -> None:
        return None

    @spry.route("/page")
    def page(event: Event) -> str:
        return "page body"

    @spry.route("/ws")
    def ws(event: Event) -> web.StreamResponse:
        return event.ws.upgrade(session)

    client = await serve(spry)
    resp = await client.head("/page")
    assert (resp.status, resp.headers["Content-Length"], await resp.read()) == (200, "9", b"")
    resp = await client.head("/ws")
    assert (resp.status, resp.headers["Allow"]) == (405, "GET")


async def test_a_later_head_route_takes_over_from_the_get_fallback(serve: ClientFactory) -> None:
    spry = Spry()
    spry.route("/a")(lambda event: "get")
    spry.route("/a", methods=["HEAD"])(lambda event: web.Response(headers={"X-Head": "1"}))
    spry.route("/b/{id}")(lambda event: "get")
    spry.route("/c")(lambda event: "get")
    spry.route("/c", methods=["*"])(lambda event: web.Response(headers={"X-Any": "1"}))
    client = await serve(spry)
    assert (await client.head("/a")).headers.get("X-Head") == "1"
    assert (await client.head("/b/1")).status == 200
    resp = await client.head("/c")
    assert (resp.status, resp.headers.get("X-Any")) == (200, None)  # HEAD prefers GET
    assert (await client.post("/c")).headers.get("X-Any") == "1"


async def test_use_and_on_error_take_methods(serve: ClientFactory) -> None:
    spry = Spry()

    async def only_post(event: Event, next: Next) -> web.StreamResponse:
        raise HTTPError(403)

    spry.use(only_post, methods=["POST"])
    spry.on_error(lambda error, event: {"get_handler": True}, methods=["GET"])
    spry.route("/x", methods=["GET", "POST"])(lambda event: "ok")
    spry.route("/fail")(lambda event: 1 / 0)
    client = await serve(spry)
    assert await get(client, "/x") == (200, "ok")
    assert (await get(client, "/x", "POST"))[0] == 403
    assert await get(client, "/fail") == (200, {"get_handler": True})
    with pytest.raises(ValueError, match="methods= takes a list"):
        spry.use(only_post, methods="GET")
    with pytest.raises(ValueError, match="methods= takes HTTP methods"):
        spry.on_error(lambda error, event: None, methods=["*"])


def test_spry_config_sets_host_and_port_and_refuses_wrong_types(tmp_path: Path) -> None:
    assert read_config(tmp_path) == ProjectConfig()
    (tmp_path / "spry_config.py").write_text("host = '127.0.0.2'\nport = 4100\n")
    assert read_config(tmp_path) == ProjectConfig("127.0.0.2", 4100)
    (tmp_path / "spry_config.py").write_text("port = '4000'\n")
    with pytest.raises(RouteConflictError, match="port must be an int"):
        read_config(tmp_path)


def test_a_folder_without_routes_or_public_is_not_a_project(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="is not a Spry project"):
        create_app(tmp_path)


def test_public_skips_links_outside_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "secret.txt").write_text("secret")
    root = project(tmp_path / "p", {"public/ok.txt": "ok"})
    (root / "public" / "leak.txt").symlink_to(tmp_path / "secret.txt")
    spry = Spry()
    with caplog.at_level(logging.WARNING, logger="aiohttp_spry"):
        spry.load_public(root / "public")
    assert any("links outside" in r.getMessage() for r in caplog.records)
