"""What ``ws.events`` yields: frozen, slotted value classes, usable in ``match``.

    async for message in ws.events:
        match message:
            case TextDataReceived(text=text): ...
            case BinaryDataReceived(data=data): ...
            case CloseReceived(code=code, reason=reason): ...

One is built per message, so each class writes its own ``__init__`` through the
slot (attrs' frozen ``__init__`` goes through ``object.__setattr__``, about
twice the cost); equality, hashing, ``repr`` and immutability are attrs'.
"""

from __future__ import annotations

from typing import Any

import attrs


@attrs.frozen(init=False)
class TextDataReceived:
    """A text message from the peer (fragments already joined, UTF-8 checked).

    >>> TextDataReceived("hi")
    TextDataReceived(text='hi')
    """

    text: str

    def __init__(self, text: str) -> None:
        _SET_TEXT(self, text)


@attrs.frozen(init=False)
class BinaryDataReceived:
    """A binary message from the peer.

    >>> BinaryDataReceived(b"\\x00") == BinaryDataReceived(b"\\x00")
    True
    """

    data: bytes

    def __init__(self, data: bytes) -> None:
        _SET_DATA(self, data)


@attrs.frozen(init=False)
class CloseReceived:
    """The peer closed the connection; iteration ends after this.

    ``code`` is 1005 when the peer's close frame carried no status code.
    The server has already answered with the same code.

    >>> CloseReceived(1001, "going away").code
    1001
    """

    code: int
    reason: str = ""

    def __init__(self, code: int, reason: str = "") -> None:
        _SET_CODE(self, code)
        _SET_REASON(self, reason)


#: Anything ``ws.events`` yields.
WebSocketMessage = TextDataReceived | BinaryDataReceived | CloseReceived


def _slot_setter(cls: type, name: str) -> Any:
    return cls.__dict__[name].__set__


_SET_TEXT = _slot_setter(TextDataReceived, "text")
_SET_DATA = _slot_setter(BinaryDataReceived, "data")
_SET_CODE = _slot_setter(CloseReceived, "code")
_SET_REASON = _slot_setter(CloseReceived, "reason")
