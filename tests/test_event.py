"""Event: the request-scoped view a handler gets."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from aiohttp_spry import Event, Spry

from .conftest import ClientFactory


async def test_event_exposes_the_request(serve: ClientFactory) -> None:
    spry = Spry()
    seen: dict[str, Any] = {}

    @spry.route("/rooms/{room}", methods=["POST"])
    async def room(event: Event) -> None:
        seen.update(
            method=event.method,
            url=str(event.url),
            pathname=event.pathname,
            path=event.path,
            query=dict(event.query),
            header=event.headers["X-Test"],
            params=dict(event.params),
            peer=event.peer,
            request=event.request,
            app=event.app,
        )

    client = await serve(spry)
    resp = await client.post("/rooms/a%20b?q=1", headers={"x-test": "yes"})
    assert resp.status == 204
    assert seen["method"] == "POST"
    assert seen["url"] == f"http://127.0.0.1:{client.port}/rooms/a%20b?q=1"
    assert seen["pathname"] == "/rooms/a b"
    assert seen["path"] == "/rooms/a%20b?q=1"
    assert seen["query"] == {"q": "1"}
    assert seen["header"] == "yes"
    assert seen["params"] == {"room": "a b"}
    assert seen["peer"] == "127.0.0.1"
    assert isinstance(seen["request"], web.Request)
    assert seen["app"] is client.app


async def test_locals_are_per_request(serve: ClientFactory) -> None:
    spry = Spry()

    @spry.route("/")
    def index(event: Event) -> dict[str, Any]:
        before = dict(event.locals)
        event.locals["user"] = "ada"
        return {"before": before, "same": event.locals is event.locals}

    client = await serve(spry)
    for _ in range(2):
        assert await (await client.get("/")).json() == {"before": {}, "same": True}


async def test_event_str_names_method_path_and_peer(serve: ClientFactory) -> None:
    spry = Spry()

    @spry.route("/x")
    def index(event: Event) -> str:
        return str(event)

    client = await serve(spry)
    assert await (await client.get("/x")).text() == "Event(GET /x peer=127.0.0.1)"
