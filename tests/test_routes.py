"""Routes, return values, HTTPError and handler failures (everything before a WebSocket)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiohttp import web

from aiohttp_spry import SESSIONS_KEY, SPRY_KEY, Event, HTTPError, Response, Spry

from .conftest import ClientFactory


@pytest.mark.parametrize(
    ("returned", "status", "content_type", "body"),
    [
        ({"a": 1}, 200, "application/json", b'{"a": 1}'),
        ([1, 2], 200, "application/json", b"[1, 2]"),
        ("hello", 200, "text/plain", b"hello"),
        (b"\x00\x01", 200, "application/octet-stream", b"\x00\x01"),
        (None, 204, "application/octet-stream", b""),
    ],
)
async def test_return_values_become_responses(
    serve: ClientFactory, returned: Any, status: int, content_type: str, body: bytes
) -> None:
    spry = Spry()

    @spry.route("/")
    async def index(event: Event) -> Any:
        return returned

    client = await serve(spry)
    resp = await client.get("/")
    assert resp.status == status
    assert await resp.read() == body
    if status != 204:
        assert resp.content_type == content_type


async def test_sync_handler_works_like_async(serve: ClientFactory) -> None:
    spry = Spry()

    @spry.route("/sync/{name}")
    def sync(event: Event) -> dict[str, str]:
        return {"hello": event.params["name"]}

    client = await serve(spry)
    resp = await client.get("/sync/ada")
    assert resp.status == 200
    assert await resp.json() == {"hello": "ada"}


async def test_aiohttp_response_passes_through(serve: ClientFactory) -> None:
    spry = Spry()

    @spry.route("/")
    async def index(event: Event) -> web.StreamResponse:
        return web.Response(text="raw", status=201, headers={"X-Raw": "1"})

    client = await serve(spry)
    resp = await client.get("/")
    assert (resp.status, resp.headers["X-Raw"], await resp.text()) == (201, "1", "raw")


async def test_response_helpers_set_status_headers_and_type(serve: ClientFactory) -> None:
    spry = Spry()

    @spry.route("/json")
    def json_route(event: Event) -> web.Response:
        return Response.json({"error": "x"}, status=500, headers={"X-A": "b"})

    @spry.route("/html")
    def html_route(event: Event) -> web.Response:
        return Response.html("<p>hi</p>")

    client = await serve(spry)
    resp = await client.get("/json")
    assert (resp.status, resp.content_type, resp.headers["X-A"]) == (500, "application/json", "b")
    assert await resp.json() == {"error": "x"}
    resp = await client.get("/html")
    assert (resp.content_type, await resp.text()) == ("text/html", "<p>hi</p>")


@pytest.mark.parametrize(
    ("error", "content_type", "body"),
    [
        (HTTPError(404, body={"error": "no room"}), "application/json", b'{"error": "no room"}'),
        (HTTPError(409, body="taken"), "text/plain", b"taken"),
        (HTTPError(418), "text/plain", b"418: I'm a Teapot"),
    ],
)
async def test_http_error_becomes_its_response(
    serve: ClientFactory, error: HTTPError, content_type: str, body: bytes
) -> None:
    spry = Spry()

    @spry.route("/")
    async def index(event: Event) -> None:
        raise error

    client = await serve(spry)
    resp = await client.get("/")
    assert resp.status == error.status
    assert resp.content_type == content_type
    assert await resp.read() == body


async def test_http_error_headers_are_sent(serve: ClientFactory) -> None:
    spry = Spry()

    @spry.route("/")
    def index(event: Event) -> None:
        raise HTTPError(401, headers={"WWW-Authenticate": "Bearer"})

    client = await serve(spry)
    resp = await client.get("/")
    assert (resp.status, resp.headers["WWW-Authenticate"]) == (401, "Bearer")


def test_http_error_refuses_non_error_status() -> None:
    with pytest.raises(ValueError, match="4xx or 5xx"):
        HTTPError(200)


async def test_aiohttp_http_exceptions_keep_working(serve: ClientFactory) -> None:
    spry = Spry()

    @spry.route("/")
    async def index(event: Event) -> None:
        raise web.HTTPFound("/elsewhere")

    client = await serve(spry)
    resp = await client.get("/", allow_redirects=False)
    assert (resp.status, resp.headers["Location"]) == (302, "/elsewhere")


async def test_handler_exception_is_logged_and_answered_with_generic_500(
    serve: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    spry = Spry()

    @spry.route("/boom")
    async def boom(event: Event) -> None:
        raise KeyError("secret-detail")

    client = await serve(spry)
    resp = await client.get("/boom")
    body = await resp.text()
    assert resp.status == 500
    assert body == "500: Internal Server Error"
    assert "Traceback" not in body
    assert "secret-detail" not in body
    [record] = [r for r in caplog.records if r.name == "aiohttp_spry"]
    assert record.levelno == logging.ERROR
    assert "GET /boom peer=127.0.0.1" in record.getMessage()
    assert record.exc_info is not None
    assert record.exc_info[0] is KeyError
    # The server keeps serving.
    assert (await client.get("/boom")).status == 500


async def test_debug_mode_shows_traceback_in_500(serve: ClientFactory) -> None:
    spry = Spry(debug=True)

    @spry.route("/boom")
    def boom(event: Event) -> None:
        raise ValueError("visible-detail")

    client = await serve(spry)
    body = await (await client.get("/boom")).text()
    assert "Traceback" in body
    assert "visible-detail" in body


async def test_unsupported_return_type_is_a_logged_500(
    serve: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    spry = Spry()

    @spry.route("/")
    def index(event: Event) -> object:
        return 42

    client = await serve(spry)
    resp = await client.get("/")
    assert resp.status == 500
    assert any("returned int" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


async def test_only_listed_methods_reach_the_handler(serve: ClientFactory) -> None:
    spry = Spry()

    @spry.route("/items", methods=["get", "POST"])
    async def items(event: Event) -> str:
        return event.method

    client = await serve(spry)
    assert await (await client.post("/items")).text() == "POST"
    assert await (await client.get("/items")).text() == "GET"
    resp = await client.put("/items")
    assert resp.status == 405
    assert set(resp.headers["Allow"].split(",")) == {"GET", "HEAD", "POST"}  # GET answers HEAD


async def test_get_route_answers_head_without_a_body(serve: ClientFactory) -> None:
    spry = Spry()

    @spry.route("/chat")
    async def chat(event: Event) -> str:
        return event.method

    client = await serve(spry)
    resp = await client.head("/chat")
    assert (resp.status, resp.headers["Content-Length"], await resp.read()) == (200, "4", b"")
    resp = await client.post("/chat")
    assert (resp.status, set(resp.headers["Allow"].split(","))) == (405, {"GET", "HEAD"})


def test_unknown_method_is_refused_at_declaration() -> None:
    spry = Spry()
    with pytest.raises(ValueError, match="methods must be HTTP methods"):
        spry.route("/", methods=["FETCH"])


async def test_route_name_resolves_urls(serve: ClientFactory) -> None:
    spry = Spry()

    @spry.route("/rooms/{id}", name="room")
    def room(event: Event) -> str:
        return str(event.app.router["room"].url_for(id="7"))

    client = await serve(spry)
    assert await (await client.get("/rooms/1")).text() == "/rooms/7"


async def test_route_declared_after_init_app_is_registered(serve: ClientFactory) -> None:
    spry = Spry()
    app = web.Application()
    spry.init_app(app)

    @spry.route("/late")
    def late(event: Event) -> str:
        return "late"

    assert any(r.resource and r.resource.canonical == "/late" for r in app.router.routes())


def test_init_app_twice_on_one_app_is_an_error() -> None:
    app = web.Application()
    spry = Spry(app)
    with pytest.raises(RuntimeError, match="already has a Spry extension"):
        spry.init_app(app)


async def test_one_spry_serves_two_apps_that_share_no_state(
    aiohttp_client: Any,
) -> None:
    spry = Spry()

    @spry.route("/count")
    def count(event: Event) -> int | str:
        return str(len(Spry.sessions(event.app)))

    first, second = web.Application(), web.Application()
    spry.init_app(first)
    spry.init_app(second)
    assert first[SPRY_KEY] is second[SPRY_KEY] is spry
    assert first[SESSIONS_KEY] is not second[SESSIONS_KEY]
    for app in (first, second):
        client = await aiohttp_client(app)
        assert await (await client.get("/count")).text() == "0"


def test_invalid_settings_are_refused_with_the_value() -> None:
    with pytest.raises(ValueError, match="heartbeat must be a positive number"):
        Spry(heartbeat=-1)
    with pytest.raises(ValueError, match="shutdown_timeout"):
        Spry(shutdown_timeout=0)
