"""spry.asyncapi(): AsyncAPI 3.0.0 documents, validated against the official JSON schema.

The schema is ``@asyncapi/specs``' ``schemas/3.0.0-without-$id.json`` from npm
(``npm ci --prefix tests/asyncapi``, which ``.ci/run`` does), read by Python's
``jsonschema``. Beyond the schema, every ``$ref`` must resolve and every
operation's messages must be its channel's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import attrs
import jsonschema
import pytest
from aiohttp import web

from aiohttp_spry import Event, Spry
from example_app.main import create_app
from tests.support.optional import require_tool

SPECS = Path(__file__).resolve().parent / "node_modules" / "@asyncapi" / "specs" / "schemas"
SCHEMA_PATH = SPECS / "3.0.0-without-$id.json"


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    require_tool(
        "@asyncapi/specs",
        SCHEMA_PATH.exists(),
        f"{SCHEMA_PATH} missing: npm ci --prefix tests/asyncapi",
    )
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def check(validator: jsonschema.protocols.Validator, doc: dict[str, Any]) -> None:
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])
    for ref in refs(doc):
        resolve(doc, ref)  # KeyError: a dangling $ref
    for name, operation in doc.get("operations", {}).items():
        channel_ref = operation["channel"]["$ref"]
        for message in operation.get("messages", []):
            assert message["$ref"].startswith(f"{channel_ref}/messages/"), (name, message)


async def example_document(aiohttp_client: Any) -> dict[str, Any]:
    client = await aiohttp_client(await create_app())
    response = await client.get("/asyncapi.json")
    assert response.status == 200
    assert response.content_type == "application/json"
    doc: dict[str, Any] = await response.json()
    return doc


async def test_example_serves_a_valid_asyncapi_3_document(
    aiohttp_client: Any, validator: jsonschema.protocols.Validator
) -> None:
    doc = await example_document(aiohttp_client)
    check(validator, doc)
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["version"] == "1.0.0"
    assert doc["servers"]["this"]["protocol"] == "ws"
    assert doc["servers"]["this"]["host"].startswith("127.0.0.1:")
    # One channel per WebSocket route; HTTP-only routes (/, /stats) are not channels.
    assert {c["address"] for c in doc["channels"].values()} == {"/chat", "/rooms/{room}"}


async def test_example_chat_channel_carries_text_both_ways_and_offers_its_subprotocol(
    aiohttp_client: Any,
) -> None:
    doc = await example_document(aiohttp_client)
    chat = doc["channels"]["chat"]
    assert chat["description"].startswith("``GET /chat``")
    binding = chat["bindings"]["ws"]
    assert binding["method"] == "GET"
    assert binding["bindingVersion"] == "0.1.0"
    protocol = binding["headers"]["properties"]["Sec-WebSocket-Protocol"]
    assert protocol["examples"] == ["spry-chat-v1"]
    received = [resolve(doc, m["$ref"]) for m in doc["operations"]["receive_chat"]["messages"]]
    assert [(m["contentType"], m["payload"]) for m in received] == [
        ("text/plain", {"type": "string"}),
        ("application/octet-stream", {"type": "string", "format": "binary"}),
    ]
    assert doc["operations"]["receive_chat"]["action"] == "receive"
    (sent,) = doc["operations"]["send_chat"]["messages"]
    assert doc["operations"]["send_chat"]["action"] == "send"
    assert resolve(doc, sent["$ref"])["payload"] == {"type": "string"}


async def test_example_rooms_channel_has_its_parameter_query_and_message(
    aiohttp_client: Any,
) -> None:
    doc = await example_document(aiohttp_client)
    rooms = doc["channels"]["rooms_room"]
    assert rooms["address"] == "/rooms/{room}"
    assert "[A-Za-z0-9_.\\-]{1,64}" in rooms["parameters"]["room"]["description"]
    assert rooms["bindings"]["ws"]["query"]["properties"]["name"]["maxLength"] == 40
    assert set(rooms["bindings"]["ws"]["query"]["properties"]) == {"name", "since", "presence"}
    # Rooms v2: the welcome, message, ack, join and leave frames, each with its schema.
    sent = doc["operations"]["send_rooms_room"]["messages"]
    payloads = {
        resolve(doc, ref["$ref"])["payload"]["title"]: resolve(doc, ref["$ref"])["payload"]
        for ref in sent
    }
    assert set(payloads) == {"welcome", "message", "ack", "join", "leave"}
    assert payloads["message"]["required"] == ["type", "room", "from", "text", "epoch", "offset"]
    assert "recovered" in payloads["welcome"]["required"]


class Colour(Enum):
    RED = "red"
    BLUE = "blue"


@attrs.frozen
class Point:
    x: int
    y: int


@attrs.frozen
class Drawn:
    """A stroke someone drew."""

    colour: Colour
    points: list[Point]
    width: float = 1.0
    tool: Literal["pen", "brush"] = "pen"
    label: str | None = None
    tags: dict[str, str] = attrs.field(factory=dict)


def test_attrs_messages_become_object_schemas_named_after_the_class(
    validator: jsonschema.protocols.Validator,
) -> None:
    app = web.Application()
    spry = Spry(app)

    @spry.route("/draw/{board}", receives=Drawn, sends=[Drawn, {"type": "string"}])
    async def draw(event: Event) -> None:
        """A shared whiteboard."""

    doc = spry.asyncapi(app, title="Whiteboard", version="2.1.0", description="Strokes.")
    check(validator, doc)
    messages = doc["channels"]["draw_board"]["messages"]
    assert set(messages) == {"Drawn", "draw_boardSent"}  # Drawn declared twice, listed once
    drawn = messages["Drawn"]
    assert drawn["summary"] == "A stroke someone drew."
    schema = drawn["payload"]
    assert schema["required"] == ["colour", "points"]
    assert schema["properties"]["colour"] == {"enum": ["red", "blue"]}
    assert schema["properties"]["points"]["items"]["required"] == ["x", "y"]
    assert schema["properties"]["tool"] == {"enum": ["pen", "brush"]}
    assert schema["properties"]["label"] == {"anyOf": [{"type": "string"}, {"type": "null"}]}
    assert schema["properties"]["tags"]["additionalProperties"] == {"type": "string"}
    # The payload is a JSON Schema that accepts a real message and refuses a wrong one.
    jsonschema.validate({"colour": "red", "points": [{"x": 1, "y": 2}]}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"colour": "green", "points": []}, schema)


def test_routes_without_declarations_are_left_out_and_an_empty_app_is_valid(
    validator: jsonschema.protocols.Validator,
) -> None:
    app = web.Application()
    spry = Spry(app)

    @spry.route("/plain")
    def plain(event: Event) -> str:
        return "hi"

    doc = spry.asyncapi(app, title="Nothing", version="0")
    check(validator, doc)
    assert doc["channels"] == {} and doc["operations"] == {}


def test_a_route_with_only_subprotocols_is_a_channel_without_operations(
    validator: jsonschema.protocols.Validator,
) -> None:
    app = web.Application()
    spry = Spry(app)
    spry.route("/v2", subprotocols=["v2.chat", "v1.chat"], headers={"Authorization": str})(
        lambda event: None
    )
    doc = spry.asyncapi(app, title="t", version="1")
    check(validator, doc)
    headers = doc["channels"]["v2"]["bindings"]["ws"]["headers"]["properties"]
    assert headers["Authorization"] == {"type": "string"}
    assert headers["Sec-WebSocket-Protocol"]["examples"] == ["v2.chat", "v1.chat"]
    assert doc["operations"] == {}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"receives": 42}, "a message must be a JSON Schema dict, an attrs class, str or bytes"),
        ({"sends": [str, int]}, "got type <class 'int'>"),
        ({"subprotocols": "chat"}, "subprotocols takes a list like ['chat']"),
        ({"subprotocols": [""]}, "a subprotocol must be a non-empty str"),
        ({"query": ["token"]}, "query takes {name: JSON Schema or type}"),
        ({"headers": {"X-Id": complex}}, "headers 'X-Id': no JSON Schema for the type"),
    ],
)
def test_wrong_declarations_are_refused_at_the_route_naming_it(
    kwargs: dict[str, Any], message: str
) -> None:
    spry = Spry()
    with pytest.raises(TypeError, match="route '/x'") as caught:
        spry.route("/x", **kwargs)
    assert message in str(caught.value)


def test_an_attrs_field_without_a_json_schema_names_the_field() -> None:
    @attrs.frozen
    class Bad:
        when: complex

    with pytest.raises(TypeError, match=r"Bad\.when: no JSON Schema for the type"):
        Spry().route("/x", receives=Bad)


def test_asyncapi_refuses_an_app_of_another_extension_and_an_empty_title() -> None:
    spry = Spry(web.Application())
    other = web.Application()
    Spry(other)
    with pytest.raises(ValueError, match="was not initialised with this Spry"):
        spry.asyncapi(other, title="t", version="1")
    app = web.Application()
    spry2 = Spry(app)
    with pytest.raises(TypeError, match="title must be a non-empty str"):
        spry2.asyncapi(app, title="", version="1")
