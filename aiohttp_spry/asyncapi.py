"""AsyncAPI 3.0: a machine-readable description of an application's WebSocket routes.

A route joins the document when it declares what its WebSocket carries::

    @spry.route("/chat", receives=str, sends=str, subprotocols=["spry-chat-v1"])
    async def chat(event: Event) -> web.StreamResponse:
        ...

    document = spry.asyncapi(app, title="Echo chat", version="1.0.0")

Each such route becomes one channel (its address and path parameters, the
``ws`` binding with the method, query and headers, the subprotocols it
offers) with one operation per direction: ``receive`` for what clients send
to the application (``receives=``), ``send`` for what it sends them
(``sends=``). A message is a JSON Schema ``dict``, an attrs class (its
fields become an object schema), ``str`` (a text frame) or ``bytes`` (a binary
frame), or a list of those when a direction carries several kinds.

Declarations are converted and checked once, when the route is declared, and
are documentation only: nothing runs per request or per message, and received
messages are not validated against them.
"""

from __future__ import annotations

import collections.abc
import enum
import inspect
import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal, Union

import attrs

if TYPE_CHECKING:
    from .endpoint import Route

#: The AsyncAPI version of the documents made here.
ASYNCAPI_VERSION: Final = "3.0.0"
#: The version of AsyncAPI's WebSockets bindings used for the ``ws`` binding.
WS_BINDING_VERSION: Final = "0.1.0"

#: What one message may be declared as: a JSON Schema, an attrs class, ``str`` or ``bytes``.
MessageLike = Mapping[str, Any] | type
#: What ``receives=`` and ``sends=`` take: one message, or a list of them.
Messages = MessageLike | Sequence[MessageLike]
#: What ``query=`` and ``headers=`` take: ``{name: schema or type}``, or an object JSON Schema.
Fields = Mapping[str, Any]

_JSON: Final = "application/json"
_TEXT: Final = "text/plain"
_BINARY: Final = "application/octet-stream"
_SIMPLE_TYPES: Final[Mapping[object, dict[str, Any]]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    type(None): {"type": "null"},
    bytes: {"type": "string", "contentEncoding": "base64"},
    Any: {},
    object: {},
}


class Direction(enum.Enum):
    """Which way a message travels, from the application's point of view (AsyncAPI's action)."""

    RECEIVE = "receive"  #: client → application (``receives=``)
    SEND = "send"  #: application → client (``sends=``)


@attrs.frozen
class MessageSpec:
    """One kind of message a route carries, ready for the document.

    >>> spec = MessageSpec.of(str, "chat", Direction.RECEIVE)
    >>> spec.name, spec.content_type
    ('chatReceived', 'text/plain')
    """

    name: str
    payload: dict[str, Any]
    content_type: str
    description: str | None = None

    @classmethod
    def of(
        cls, declared: object, where: str, direction: Direction, *, route: str | None = None
    ) -> MessageSpec:
        """Convert one declared message; ``where`` is the default name's stem, ``route`` the
        path that errors name (``where`` when not given).

        Raises:
            TypeError: ``declared`` is none of a JSON Schema ``dict``, an attrs
                class, ``str`` or ``bytes``, or an attrs field has a type with
                no JSON Schema.
        """
        suffix = "Received" if direction is Direction.RECEIVE else "Sent"
        if declared is str:
            return cls(f"{where}{suffix}", {"type": "string"}, _TEXT)
        if declared is bytes:
            return cls(f"{where}{suffix}", {"type": "string", "format": "binary"}, _BINARY)
        if isinstance(declared, type) and attrs.has(declared):
            return cls(
                declared.__name__,
                json_schema(declared),
                _JSON,
                _first_paragraph(inspect.getdoc(declared)),
            )
        if isinstance(declared, Mapping):
            schema = dict(declared)
            name = schema.get("title")
            content_type = _TEXT if schema.get("type") == "string" else _JSON
            return cls(
                str(name) if name else f"{where}{suffix}",
                schema,
                content_type,
                schema.get("description"),
            )
        raise TypeError(
            f"route {(route or where)!r}: a message must be a JSON Schema dict, an attrs "
            f"class, str or bytes, got {type(declared).__name__} {declared!r}"
        )

    def to_asyncapi(self) -> dict[str, Any]:
        """The AsyncAPI Message Object."""
        message: dict[str, Any] = {
            "name": self.name,
            "contentType": self.content_type,
            "payload": self.payload,
        }
        if self.description:
            message["summary"] = self.description
        return message


@attrs.frozen
class ChannelSpec:
    """What a route declared about its WebSocket, checked and converted (:func:`channel_spec`)."""

    receives: tuple[MessageSpec, ...] = ()
    sends: tuple[MessageSpec, ...] = ()
    subprotocols: tuple[str, ...] = ()
    query: dict[str, Any] | None = None
    headers: dict[str, Any] | None = None


def channel_spec(
    path: str,
    *,
    receives: Messages | None = None,
    sends: Messages | None = None,
    subprotocols: Iterable[str] = (),
    query: Fields | None = None,
    headers: Fields | None = None,
) -> ChannelSpec | None:
    """Check and convert a route's WebSocket declarations; ``None`` when it declared none.

    Raises:
        TypeError: a message, ``query``, ``headers`` or ``subprotocols`` of
            the wrong type (the message names the route and the value).
    """
    if isinstance(subprotocols, str):
        raise TypeError(
            f"route {path!r}: subprotocols takes a list like [{subprotocols!r}], "
            f"got the str {subprotocols!r}"
        )
    offered = tuple(subprotocols)
    for protocol in offered:
        if not isinstance(protocol, str) or not protocol:
            raise TypeError(
                f"route {path!r}: a subprotocol must be a non-empty str, got {protocol!r}"
            )
    if receives is None and sends is None and not offered and query is None and headers is None:
        return None
    where = _channel_id(path)
    return ChannelSpec(
        receives=_messages(receives, where, Direction.RECEIVE, path),
        sends=_messages(sends, where, Direction.SEND, path),
        subprotocols=offered,
        query=_fields(query, path, "query"),
        headers=_fields(headers, path, "headers"),
    )


def json_schema(cls: type) -> dict[str, Any]:
    """The JSON Schema of an attrs class: an object with one property per field.

    Fields without a default are required. ``str``, ``int``, ``float``,
    ``bool``, ``None``, ``Any``, ``Literal[...]``, enums, ``list``/``tuple``/
    ``Sequence``, ``dict``/``Mapping`` with ``str`` keys, unions and nested
    attrs classes are understood.

    >>> @attrs.frozen
    ... class Said:
    ...     text: str
    ...     room: str | None = None
    >>> json_schema(Said)["required"] == ["text"]
    True

    Raises:
        TypeError: ``cls`` is not an attrs class, or a field's type has no JSON Schema.
    """
    if not (isinstance(cls, type) and attrs.has(cls)):
        raise TypeError(f"json_schema() takes an attrs class, got {cls!r}")
    hints = typing.get_type_hints(cls)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for field in attrs.fields(cls):
        name = field.alias or field.name
        try:
            properties[name] = _schema_of_type(hints.get(field.name, Any))
        except TypeError as error:
            raise TypeError(f"{cls.__name__}.{field.name}: {error}") from None
        if field.default is attrs.NOTHING:
            required.append(name)
    schema: dict[str, Any] = {
        "type": "object",
        "title": cls.__name__,
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        schema["required"] = required
    return schema


def document(
    routes: Iterable[Route],
    *,
    title: str,
    version: str,
    description: str | None = None,
    servers: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of the routes that declared a WebSocket channel.

    Prefer :meth:`Spry.asyncapi <aiohttp_spry.Spry.asyncapi>`, which passes
    the extension's routes.

    Raises:
        TypeError: ``title`` or ``version`` is not a non-empty ``str``.
    """
    for label, value in (("title", title), ("version", version)):
        if not isinstance(value, str) or not value:
            raise TypeError(f"asyncapi(): {label} must be a non-empty str, got {value!r}")
    info: dict[str, Any] = {"title": title, "version": version}
    if description:
        info["description"] = description
    doc: dict[str, Any] = {"asyncapi": ASYNCAPI_VERSION, "info": info}
    if servers:
        doc["servers"] = {name: dict(server) for name, server in servers.items()}
    doc["defaultContentType"] = _JSON
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for route in routes:
        spec = route.channel
        if spec is None:
            continue
        channel_id = _unique(_channel_id(route.path), channels)
        channel, messages = _channel(route, spec)
        channels[channel_id] = channel
        for direction, declared in (
            (Direction.RECEIVE, spec.receives),
            (Direction.SEND, spec.sends),
        ):
            if not declared:
                continue
            refs = [
                {"$ref": f"#/channels/{channel_id}/messages/{messages[id(message)]}"}
                for message in declared
            ]
            operations[f"{direction.value}_{channel_id}"] = {
                "action": direction.value,
                "channel": {"$ref": f"#/channels/{channel_id}"},
                "messages": refs,
            }
    doc["channels"] = channels
    doc["operations"] = operations
    return doc


def _channel(route: Route, spec: ChannelSpec) -> tuple[dict[str, Any], dict[int, str]]:
    """One Channel Object, and each declared message's key in its ``messages``."""
    address, parameters = _address(route.path)
    channel: dict[str, Any] = {"address": address}
    summary = _first_paragraph(inspect.getdoc(route.handler))
    if summary:
        channel["description"] = summary
    keys: dict[int, str] = {}
    by_key: dict[str, dict[str, Any]] = {}
    for message in (*spec.receives, *spec.sends):
        rendered = message.to_asyncapi()
        key = message.name
        if key in by_key and by_key[key] != rendered:
            key = _unique(key, by_key)
        by_key[key] = rendered
        keys[id(message)] = key
    channel["messages"] = by_key
    if parameters:
        channel["parameters"] = parameters
    binding: dict[str, Any] = {"method": "GET"}
    if spec.query is not None:
        binding["query"] = spec.query
    headers = spec.headers
    if spec.subprotocols:
        headers = dict(headers or {"type": "object", "properties": {}})
        headers["properties"] = {
            **headers.get("properties", {}),
            "Sec-WebSocket-Protocol": {
                "type": "string",
                "description": "Subprotocols the client offers; the route speaks "
                + ", ".join(spec.subprotocols)
                + " and selects one only when the client offered it.",
                "examples": list(spec.subprotocols),
            },
        }
    if headers is not None:
        binding["headers"] = headers
    binding["bindingVersion"] = WS_BINDING_VERSION
    channel["bindings"] = {"ws": binding}
    return channel, keys


def _address(path: str) -> tuple[str, dict[str, Any]]:
    """aiohttp's ``/rooms/{room:[a-z]{1,64}}`` → ``/rooms/{room}`` and its parameters."""
    address: list[str] = []
    parameters: dict[str, Any] = {}
    i = 0
    while i < len(path):
        if path[i] != "{":
            address.append(path[i])
            i += 1
            continue
        depth, j = 1, i + 1
        while j < len(path) and depth:
            depth += {"{": 1, "}": -1}.get(path[j], 0)
            j += 1
        name, _, pattern = path[i + 1 : j - 1].partition(":")
        address.append(f"{{{name}}}")
        parameters[name] = {
            "description": f"A path segment matching `{pattern}`." if pattern else "A path segment."
        }
        i = j
    return "".join(address), parameters


def _channel_id(path: str) -> str:
    address, _ = _address(path)
    return re.sub(r"[^A-Za-z0-9]+", "_", address).strip("_") or "root"


def _unique(key: str, taken: Mapping[str, object]) -> str:
    candidate, n = key, 2
    while candidate in taken:
        candidate, n = f"{key}_{n}", n + 1
    return candidate


def _messages(
    declared: Messages | None, where: str, direction: Direction, path: str
) -> tuple[MessageSpec, ...]:
    if declared is None:
        return ()
    if isinstance(declared, (list, tuple)):
        return tuple(MessageSpec.of(item, where, direction, route=path) for item in declared)
    return (MessageSpec.of(declared, where, direction, route=path),)


def _fields(declared: Fields | None, path: str, label: str) -> dict[str, Any] | None:
    if declared is None:
        return None
    if not isinstance(declared, Mapping):
        raise TypeError(
            f"route {path!r}: {label} takes {{name: JSON Schema or type}} or an object JSON "
            f"Schema, got {type(declared).__name__} {declared!r}"
        )
    if declared.get("type") == "object" and isinstance(declared.get("properties"), Mapping):
        return dict(declared)
    properties: dict[str, Any] = {}
    for name, value in declared.items():
        if isinstance(value, Mapping):
            properties[str(name)] = dict(value)
        else:
            try:
                properties[str(name)] = _schema_of_type(value)
            except TypeError as error:
                raise TypeError(f"route {path!r}: {label} {name!r}: {error}") from None
    return {"type": "object", "properties": properties}


def _schema_of_type(hint: Any) -> dict[str, Any]:
    simple = _SIMPLE_TYPES.get(hint)
    if simple is not None:
        return dict(simple)
    if isinstance(hint, type) and attrs.has(hint):
        return json_schema(hint)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return {"enum": [member.value for member in hint]}
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Literal:
        return {"enum": list(args)}
    if origin in (Union, types.UnionType):
        return {"anyOf": [_schema_of_type(arg) for arg in args]}
    if origin in (list, set, frozenset, collections.abc.Sequence, collections.abc.Set):
        return {"type": "array", "items": _schema_of_type(args[0]) if args else {}}
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": _schema_of_type(args[0])}
        items = [_schema_of_type(arg) for arg in args]
        return {"type": "array", "items": items, "minItems": len(items), "maxItems": len(items)}
    if origin in (dict, collections.abc.Mapping):
        if args and args[0] is not str:
            raise TypeError(f"JSON objects have str keys, got {hint!r}")
        return {"type": "object", "additionalProperties": _schema_of_type(args[1]) if args else {}}
    if hint in (list, tuple, set, frozenset):
        return {"type": "array"}
    if hint is dict:
        return {"type": "object"}
    raise TypeError(
        f"no JSON Schema for the type {hint!r}; declare the message as a JSON Schema dict"
    )


def _first_paragraph(doc: str | None) -> str | None:
    if not doc:
        return None
    return doc.strip().split("\n\n", 1)[0].replace("\n", " ")
