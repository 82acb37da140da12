"""Middleware, scoped error handlers and per-route chains around handlers and handshakes."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiohttp import WSMsgType, web

from aiohttp_spry import Event, HTTPError, Next, NotFoundError, Spry, UpgradeResponse, WebSocket

from .conftest import ClientFactory, spry_records
from .support.rawws import RawWebSocket


async def send_x(ws: WebSocket) -> None:
    await ws.send_text("x")


def recorder(log: list[str], name: str) -> Any:
    async def middleware(event: Event, next: Next) -> web.StreamResponse:
        log.append(f"{name} before")
        response = await next()
        log.append(f"{name} after")
        return response

    return middleware


async def test_middleware_runs_outer_to_inner_in_registration_order(serve: ClientFactory) -> None:
    spry = Spry()
    log: list[str] = []
    spry.use(recorder(log, "first"))
    spry.middleware(recorder(log, "second"))

    @spry.route("/", middleware=[recorder(log, "route")])
    def index(event: Event) -> str:
        log.append("handler")
        return "ok"

    client = await serve(spry)
    assert await (await client.get("/")).text() == "ok"
    assert log == [
        "first before",
        "second before",
        "route before",
        "handler",
        "route after",
        "second after",
        "first after",
    ]


async def test_middleware_around_a_handshake_is_before_handler_after_then_session(
    serve: ClientFactory,
) -> None:
    spry = Spry()
    log: list[str] = []

    @spry.middleware
    async def observe(event: Event, next: Next) -> web.StreamResponse:
        log.append("before")
        response = await next()
        log.append(f"after upgrade={isinstance(response, UpgradeResponse)}")
        return response

    async def session(ws: WebSocket) -> None:
        log.append("session")
        async for message in ws.events:
            log.append(f"message {getattr(message, 'text', message)}")

    @spry.route("/ws")
    def route(event: Event) -> web.StreamResponse:
        log.append("handler")
        return event.ws.upgrade(session)

    client = await serve(spry)
    async with client.ws_connect("/ws") as ws:
        await ws.send_str("one")
        await ws.send_str("two")
        await ws.close()
    assert log[:4] == ["before", "handler", "after upgrade=True", "session"]
    # Middleware never runs per message.
    assert log[4:6] == ["message one", "message two"]
    assert log.count("before") == 1


async def test_middleware_can_short_circuit_and_refuse_an_upgrade(serve: ClientFactory) -> None:
    spry = Spry()
    reached: list[str] = []

    @spry.middleware
    async def refuse(event: Event, next: Next) -> web.StreamResponse:
        response = await next()
        if isinstance(response, UpgradeResponse) and event.query.get("token") != "ok":
            raise HTTPError(401, body={"error": "token required"})
        return response

    async def session(ws: WebSocket) -> None:
        reached.append("session")
        await ws.send_text("welcome")

    @spry.route("/ws")
    def route(event: Event) -> web.StreamResponse:
        return event.ws.upgrade(session)

    client = await serve(spry)
    conn = await RawWebSocket.connect("127.0.0.1", client.port)
    reply = await conn.request("/ws")
    assert (reply.status, reply.body) == (401, b'{"error": "token required"}')
    await conn.aclose()
    assert reached == []
    async with client.ws_connect("/ws?token=ok") as ws:
        assert await ws.receive_str() == "welcome"
    assert reached == ["session"]


async def test_middleware_return_values_are_converted_like_handlers(serve: ClientFactory) -> None:
    spry = Spry()

    @spry.middleware
    async def maintenance(event: Event, next: Next) -> Any:
        return {"maintenance": True}

    @spry.route("/")
    def index(event: Event) -> str:
        raise AssertionError("not reached")

    client = await serve(spry)
    assert await (await client.get("/")).json() == {"maintenance": True}


async def test_scoped_middleware_applies_only_under_its_path(serve: ClientFactory) -> None:
    spry = Spry()

    async def tag(event: Event, next: Next) -> web.StreamResponse:
        response = await next()
        response.headers["X-Admin"] = "1"
        return response

    spry.use(tag, path="/admin")

    for path in ("/admin", "/admin/users", "/administrator", "/"):
        spry.route(path)(lambda event: "ok")

    client = await serve(spry)
    tagged = {
        path: "X-Admin" in (await client.get(path)).headers
        for path in ("/admin", "/admin/users", "/administrator", "/")
    }
    assert tagged == {"/admin": True, "/admin/users": True, "/administrator": False, "/": False}


async def test_error_handlers_are_tried_innermost_first(serve: ClientFactory) -> None:
    spry = Spry()
    tried: list[str] = []

    def declining(name: str) -> Any:
        def on_error(error: Exception, event: Event) -> None:
            tried.append(name)

        return on_error

    async def answering(error: Exception, event: Event) -> dict[str, str]:
        tried.append("global")
        return {"handled": str(error)}

    spry.on_error(answering)
    spry.on_error(declining("a"), path="/a")
    spry.on_error(declining("a/b"), path="/a/b")

    @spry.route("/a/b/c", on_error=declining("route"))
    def deep(event: Event) -> None:
        raise ValueError("boom")

    client = await serve(spry)
    resp = await client.get("/a/b/c")
    assert (resp.status, await resp.json()) == (200, {"handled": "boom"})
    assert tried == ["route", "a/b", "a", "global"]


async def test_error_handler_that_raises_passes_its_new_error_outward(
    serve: ClientFactory,
) -> None:
    spry = Spry()
    seen: list[str] = []

    @spry.error_handler
    def outer(error: Exception, event: Event) -> Any:
        seen.append(type(error).__name__)
        raise error

    def inner(error: Exception, event: Event) -> Any:
        raise HTTPError(409, body="translated")

    spry.on_error(inner, path="/x")

    @spry.route("/x")
    def route(event: Event) -> None:
        raise KeyError("original")

    client = await serve(spry)
    resp = await client.get("/x")
    assert (resp.status, await resp.text()) == (409, "translated")
    assert seen == ["HTTPError"]


async def test_unhandled_non_http_error_is_logged_and_500(
    serve: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    spry = Spry()
    spry.on_error(lambda error, event: None)

    @spry.route("/x")
    def route(event: Event) -> None:
        raise KeyError("hidden")

    client = await serve(spry)
    resp = await client.get("/x")
    assert (resp.status, await resp.text()) == (500, "500: Internal Server Error")
    [record] = spry_records(caplog, logging.ERROR)
    assert record.exc_info is not None
    assert record.exc_info[0] is KeyError


async def test_error_handler_translates_426_from_upgrade_into_200(serve: ClientFactory) -> None:
    spry = Spry()

    def friendly(error: Exception, event: Event) -> Any:
        if isinstance(error, HTTPError) and error.status == 426:
            return {"message": "use a WebSocket client"}
        return None

    spry.on_error(friendly, path="/private")

    async def session(ws: WebSocket) -> None:
        await ws.send_text("private")

    @spry.route("/private/chat")
    def chat(event: Event) -> web.StreamResponse:
        return event.ws.upgrade(session)

    client = await serve(spry)
    resp = await client.get("/private/chat")
    assert (resp.status, await resp.json()) == (200, {"message": "use a WebSocket client"})
    async with client.ws_connect("/private/chat") as ws:
        assert await ws.receive_str() == "private"


async def test_error_handlers_can_shape_malformed_handshake_400(serve: ClientFactory) -> None:
    spry = Spry()
    spry.on_error(lambda error, event: {"refused": getattr(error, "status", None)})

    @spry.route("/ws")
    def route(event: Event) -> web.StreamResponse:
        return event.ws.upgrade(send_x)

    client = await serve(spry)
    conn = await RawWebSocket.connect("127.0.0.1", client.port)
    reply = await conn.request("/ws", headers={"Sec-WebSocket-Key": None})
    assert (reply.status, reply.body) == (200, b'{"refused": 400}')
    await conn.aclose()


async def test_session_exception_never_reaches_error_handlers(
    serve: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    spry = Spry()
    reached: list[Exception] = []
    spry.on_error(lambda error, event: reached.append(error))

    async def session(ws: WebSocket) -> None:
        raise RuntimeError("in session")

    @spry.route("/ws")
    def route(event: Event) -> web.StreamResponse:
        return event.ws.upgrade(session)

    client = await serve(spry)
    async with client.ws_connect("/ws") as ws:
        assert (await ws.receive()).type is WSMsgType.CLOSE
        assert ws.close_code == 1011
    assert reached == []
    assert len(spry_records(caplog, logging.ERROR)) == 1


async def test_unknown_path_under_scope_reaches_its_error_handler_as_not_found(
    serve: ClientFactory,
) -> None:
    spry = Spry()
    seen: list[tuple[str, str]] = []

    def not_found(error: Exception, event: Event) -> Any:
        if isinstance(error, NotFoundError):
            seen.append((error.method, error.path))
            return web.json_response({"missing": error.path}, status=404)
        return None

    spry.on_error(not_found, path="/api")

    @spry.route("/api/known")
    def known(event: Event) -> str:
        return "known"

    client = await serve(spry)
    resp = await client.post("/api/nothing/here")
    assert (resp.status, await resp.json()) == (404, {"missing": "/api/nothing/here"})
    assert seen == [("POST", "/api/nothing/here")]
    # Outside the scope, aiohttp's own 404 is untouched.
    resp = await client.get("/elsewhere")
    assert (resp.status, await resp.text()) == (404, "404: Not Found")
    assert await (await client.get("/api/known")).text() == "known"


async def test_not_found_middleware_is_installed_only_with_error_handlers() -> None:
    without, with_handlers = web.Application(), web.Application()
    Spry(without)
    spry = Spry(with_handlers)
    spry.on_error(lambda error, event: None)
    assert list(without.middlewares) == []
    assert len(with_handlers.middlewares) == 1


def test_sync_middleware_is_refused_at_registration() -> None:
    spry = Spry()
    with pytest.raises(TypeError, match="must be an async function"):
        spry.use(lambda event, next: None)  # type: ignore[type-var]
    with pytest.raises(ValueError, match="must start with '/'"):
        spry.on_error(lambda error, event: None, path="admin")


async def test_aiohttp_middlewares_wrap_spry_routes(aiohttp_client: Any) -> None:
    log: list[str] = []

    @web.middleware
    async def outer(request: web.Request, handler: Any) -> web.StreamResponse:
        log.append("aiohttp before")
        response: web.StreamResponse = await handler(request)
        log.append("aiohttp after")
        return response

    app = web.Application(middlewares=[outer])
    spry = Spry(app)
    spry.use(recorder(log, "spry"))

    @spry.route("/")
    def index(event: Event) -> str:
        log.append("handler")
        return "ok"

    client = await aiohttp_client(app)
    assert await (await client.get("/")).text() == "ok"
    assert log == ["aiohttp before", "spry before", "handler", "spry after", "aiohttp after"]


async def test_head_to_websocket_get_route_is_405_allow_get(serve: ClientFactory) -> None:
    spry = Spry()

    @spry.route("/chat")
    def chat(event: Event) -> web.StreamResponse:
        return event.ws.upgrade(send_x)

    client = await serve(spry)
    resp = await client.head("/chat")
    assert (resp.status, resp.headers["Allow"]) == (405, "GET")


async def test_registering_after_the_app_started_raises_and_records_nothing(
    serve: ClientFactory,
) -> None:
    spry = Spry()

    @spry.route("/")
    def index(event: Event) -> str:
        return "plain"

    client = await serve(spry)
    assert await (await client.get("/")).text() == "plain"

    async def override(event: Event, next: Next) -> Any:
        return "wrapped"

    def shape(error: Exception, event: Event) -> str:
        return "shaped"

    def late(event: Event) -> str:
        return "late"

    with pytest.raises(RuntimeError, match="has already started"):
        spry.use(override)
    with pytest.raises(RuntimeError, match="has already started"):
        spry.on_error(shape)
    with pytest.raises(RuntimeError, match="has already started"):
        spry.route("/late")(late)
    assert await (await client.get("/")).text() == "plain"
    assert (await client.get("/late")).status == 404
    # Nothing was recorded: a new application gets none of the refused ones.
    fresh = web.Application()
    spry.init_app(fresh)
    assert [(r.method, r.resource.canonical) for r in fresh.router.routes() if r.resource] == [
        ("GET", "/"),
        ("HEAD", "/"),
    ]
    assert fresh.middlewares == []
