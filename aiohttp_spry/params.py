"""``event.params``: a route's path parameters, with Spry's typed accessors.

A missing or malformed parameter is the client's mistake, so the accessors
raise a 400 :class:`HTTPError` whose JSON body names the parameter, the value
and what was expected; route error handlers can still shape it.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterator, Mapping
from typing import TypeVar

from .exceptions import HTTPError
from .scanner import HIDDEN_PREFIX

T = TypeVar("T")


class Params(Mapping[str, str]):
    """The path parameters of the matched route, as a read-only mapping.

    Example::

        # routes/users/[id].get.py
        def handler(event: Event) -> dict[str, int]:
            return {"id": event.params.int("id")}   # /users/x → 400

    Unnamed wildcards (``[_]``, ``[...]``) match but are not listed.
    """

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = values

    def __getitem__(self, name: str) -> str:
        if name.startswith(HIDDEN_PREFIX):
            raise KeyError(name)
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return (name for name in self._values if not name.startswith(HIDDEN_PREFIX))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def required(self, name: str) -> str:
        """The parameter's text.

        Raises:
            HTTPError: 400, the route matched without it (an optional
                ``[[name]]`` left out).
        """
        value = self.get(name)
        if value is None:
            raise HTTPError(
                400,
                body={"error": f"missing path parameter {name!r}", "parameter": name},
            )
        return value

    def int(self, name: str) -> builtins.int:
        """The parameter as a base-10 integer (``"42"`` → ``42``; ``"4x"``, ``"٤"`` refused).

        Raises:
            HTTPError: 400, missing or not an integer.
        """
        value = self.required(name)
        text = value.removeprefix("-")
        if not (text.isascii() and text.isdigit()):
            raise _malformed(name, value, "an integer")
        return builtins.int(value)

    def decode(self, name: str, decoder: Callable[[str], T]) -> T:
        """The parameter passed through ``decoder`` (``uuid.UUID``, ``date.fromisoformat``,
        an ``Enum`` class, ...). A decoder rejects a value by raising ``ValueError``
        or ``TypeError``; any other exception is a bug and propagates.

        Raises:
            HTTPError: 400, missing or refused by ``decoder`` (its message included).
        """
        value = self.required(name)
        try:
            return decoder(value)
        except (ValueError, TypeError) as exc:
            what = getattr(decoder, "__name__", repr(decoder))
            raise _malformed(name, value, f"accepted by {what}: {exc}") from exc

    def __repr__(self) -> str:
        return f"Params({dict(self)!r})"


def _malformed(name: str, value: str, expected: str) -> HTTPError:
    return HTTPError(
        400,
        body={
            "error": f"path parameter {name!r} must be {expected}, got {value!r}",
            "parameter": name,
            "value": value,
        },
    )
