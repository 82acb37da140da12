"""Silent mistakes become clear errors; the extension's lifecycle and state rules."""

from __future__ import annotations

import gc
import logging
import weakref
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from aiohttp_spry import (
    BinaryDataReceived,
    CloseReceived,
    Event,
    HTTPError,
    Spry,
    TextDataReceived,
    WebSocket,
)

from .conftest import ClientFactory, spry_records


async def echo(ws: WebSocket) -> None:
    async for message in ws.events:
        if isinstance(message, TextDataReceived):
            await ws.send_text(message.text)


def test_route_without_parentheses_is_a_type_error_saying_how_to_write_it() -> None:
    spry = Spry()

    def chat(event: Event) -> str:
        return "hi"

    with pytest.raises(TypeError, match=r'write @spry.route\("/path"\) above \'chat\''):
        spry.route(chat)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("call", "error", "names"),
    [
        (lambda: Spry(broker=123), TypeError, ["broker", "int", "123"]),  # type: ignore[arg-type]
        (lambda: Spry(max_sessions="10"), TypeError, ["max_sessions", "str", "'10'"]),  # type: ignore[arg-type]
        (lambda: Spry(max_queued=0), ValueError, ["max_queued", ">= 1", "0"]),
        (lambda: Spry(shutdown_timeout="3"), TypeError, ["shutdown_timeout", "'3'"]),  # type: ignore[arg-type]
        (lambda: Spry(debug="yes"), TypeError, ["debug", "True or False", "'yes'"]),  # type: ignore[arg-type]
        (lambda: Spry(heartbeat="30"), TypeError, ["heartbeat", "seconds", "'30'"]),  # type: ignore[arg-type]
        (lambda: Spry(max_msg_size="10"), TypeError, ["max_msg_size", "int", "'10'"]),  # type: ignore[arg-type]
        (lambda: Spry(compress=1), TypeError, ["compress", "True or False"]),  # type: ignore[arg-type]
        (lambda: Spry(allowed_origins=[1]), TypeError, ["allowed_origins", "int", "1"]),  # type: ignore[list-item]
        (lambda: Spry(allowed_origins="example.com"), ValueError, ["scheme://host", "example.com"]),
        (lambda: HTTPError("404"), TypeError, ["status", "int", "'404'"]),  # type: ignore[arg-type]
        (lambda: HTTPError(200), ValueError, ["4xx or 5xx", "200"]),
        (lambda: Spry().route(123), TypeError, ["path", "str", "int", "123"]),  # type: ignore[arg-type]
        (lambda: Spry().route("chat"), ValueError, ["start with '/'", "'chat'"]),
        (lambda: Spry().route("/x", methods="GET"), TypeError, ["methods", "list", "'GET'"]),
        (lambda: Spry().route("/x", methods=["GOT"]), ValueError, ["HTTP methods", "GOT"]),
        (lambda: Spry().route("/x")(42), TypeError, ["handler", "int", "42"]),  # type: ignore[type-var]
        (lambda: Spry().init_app("app"), TypeError, ["web.Application", "str"]),  # type: ignore[arg-type]
        (lambda: Spry().use(lambda e, n: None), TypeError, ["async function"]),  # type: ignore[type-var]
        (lambda: Spry().on_error(7), TypeError, ["callable", "7"]),  # type: ignore[type-var]
    ],
)
def test_wrong_arguments_name_the_parameter_the_value_and_what_is_expected(
    call: Any, error: type[Exception], names: list[str]
) -> None:
    with pytest.raises(error) as raised:
        call()
    for name in names:
        assert name in str(raised.value)


async def test_sync_session_handler_is_a_type_error_from_upgrade_naming_it(
    serve: ClientFactory,
) -> None:
    spry = Spry()
    refused: list[str] = []

    def plain_session(ws: WebSocket) -> None:  # not async: a mistake
        pass

    @spry.route("/chat")
    def chat(event: Event) -> Any:
        try:
            return event.ws.upgrade(plain_session)  # type: ignore[arg-type]
        except TypeError as error:
            refused.append(str(error))
            return {"refused": True}

    client = await serve(spry)
    resp = await client.get("/chat", headers=_handshake())
    assert (resp.status, await resp.json()) == (200, {"refused": True})
    assert "plain_session" in refused[0]
    assert "async def plain_session(ws: WebSocket) -> None" in refused[0]


async def test_upgrade_called_but_not_returned_is_logged_and_answered_500(
    serve: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    spry = Spry()

    @spry.route("/chat")
    def chat(event: Event) -> Any:
        event.ws.upgrade(echo)  # the result is dropped: a mistake
        return {"oops": True}

    client = await serve(spry)
    with caplog.at_level(logging.ERROR, "aiohttp_spry"):
        resp = await client.get("/chat", headers=_handshake())
    assert resp.status == 500
    assert "Traceback" not in await resp.text()
    (record,) = spry_records(caplog, logging.ERROR)
    message = record.getMessage()
    assert "GET '/chat'" in message
    assert "called event.ws.upgrade() but returned Response (status 200)" in message
    # The server keeps serving: a plain request gets upgrade()'s 426 as usual.
    assert (await client.get("/chat")).status == 426


async def test_middleware_that_replaces_an_upgrade_is_the_same_mistake(
    serve: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    spry = Spry()

    @spry.middleware
    async def swallow(event: Event, next: Any) -> Any:
        await next()
        return "replaced"

    @spry.route("/chat")
    def chat(event: Event) -> Any:
        return event.ws.upgrade(echo)

    client = await serve(spry)
    with caplog.at_level(logging.ERROR, "aiohttp_spry"):
        resp = await client.get("/chat", headers=_handshake())
    assert resp.status == 500
    assert "called event.ws.upgrade() but returned Response" in caplog.text


def test_spry_holds_its_applications_weakly() -> None:
    spry = Spry()
    app = web.Application()
    spry.init_app(app)
    ref = weakref.ref(app)
    del app
    gc.collect()
    assert ref() is None


async def test_route_with_several_methods_is_one_named_resource(
    aiohttp_client: Any,
) -> None:
    app = web.Application()
    spry = Spry(app)

    @spry.route("/rooms/{room}", methods=["GET", "POST"], name="room")
    def room(event: Event) -> dict[str, str]:
        return {"method": event.method}

    assert len(app.router.resources()) == 1
    resource = app.router["room"]
    assert sorted(route.method for route in resource) == ["GET", "HEAD", "POST"]  # GET answers HEAD
    assert str(resource.url_for(room="lobby")) == "/rooms/lobby"
    client: TestClient[web.Request, web.Application] = await aiohttp_client(app)
    assert await (await client.post("/rooms/a")).json() == {"method": "POST"}
    assert await (await client.get("/rooms/a")).json() == {"method": "GET"}


def test_duplicate_route_name_is_refused_before_anything_is_recorded() -> None:
    app = web.Application()
    spry = Spry(app)

    @spry.route("/a", name="same")
    def a(event: Event) -> str:
        return "a"

    with pytest.raises(ValueError, match="'same' is already used"):
        spry.route("/b", name="same")(a)
    assert [r.canonical for r in app.router.resources()] == ["/a"]


def test_route_endpoint_carries_the_handlers_name_for_tools() -> None:
    app = web.Application()
    spry = Spry(app)

    @spry.route("/hello")
    def hello(event: Event) -> str:
        """Say hello."""
        return "hi"

    get, head = app.router.routes()
    endpoint = get.handler.__self__  # type: ignore[attr-defined]
    assert head.handler.__self__.target is endpoint  # type: ignore[attr-defined]
    assert (endpoint.__name__, endpoint.__doc__, endpoint.__wrapped__) == (
        "hello",
        "Say hello.",
        hello,
    )


async def test_event_ws_is_made_once_per_event(serve: ClientFactory) -> None:
    spry = Spry()
    seen: list[bool] = []

    @spry.route("/")
    def index(event: Event) -> str:
        seen.append(event.ws is event.ws)
        return "ok"

    client = await serve(spry)
    assert (await client.get("/")).status == 200
    assert seen == [True]


def test_messages_are_frozen_slotted_matchable_values() -> None:
    text, binary, close = TextDataReceived("hi"), BinaryDataReceived(b"\x00"), CloseReceived(1000)
    assert (text, binary, close) == (
        TextDataReceived("hi"),
        BinaryDataReceived(b"\x00"),
        CloseReceived(1000, ""),
    )
    assert hash(text) == hash(TextDataReceived("hi"))
    for message in (text, binary, close):
        assert not hasattr(message, "__dict__")
        with pytest.raises(AttributeError):
            message.code = 1  # type: ignore[misc,union-attr]
    match text:
        case TextDataReceived(text=received):
            assert received == "hi"
        case _:
            pytest.fail("TextDataReceived did not match")
    assert repr(binary) == "BinaryDataReceived(data=b'\\x00')"


async def test_session_messages_arrive_as_the_public_classes(serve: ClientFactory) -> None:
    spry = Spry()
    received: list[object] = []

    async def session(ws: WebSocket) -> None:
        async for message in ws.events:
            received.append(message)

    @spry.route("/ws")
    def route(event: Event) -> Any:
        return event.ws.upgrade(session)

    client = await serve(spry)
    ws = await client.ws_connect("/ws")
    await ws.send_str("t")
    await ws.send_bytes(b"b")
    await ws.close(code=4000, message=b"done")
    assert ws.close_code == 4000
    assert received == [
        TextDataReceived("t"),
        BinaryDataReceived(b"b"),
        CloseReceived(4000, "done"),
    ]
    assert all(type(m).__module__ == "aiohttp_spry.websocket.messages" for m in received)


def _handshake() -> dict[str, str]:
    return {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
    }
