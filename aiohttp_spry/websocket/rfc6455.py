"""RFC 6455 rules that need no I/O: close codes, reasons, subprotocol tokens, the handshake test.

Kept apart from the session and the handshake so each rule is written once and
can be read (and tested) on its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from aiohttp import WSCloseCode
from aiohttp.http import HttpVersion, HttpVersion11
from multidict import CIMultiDictProxy

#: Close codes by name (aiohttp's enum): ``CloseCode.GOING_AWAY`` is 1001.
CloseCode = WSCloseCode

#: A close frame without a status code is reported as 1005 (§7.1.5).
NO_STATUS_RECEIVED: Final = 1005
#: Codes reserved for local use, never in a close frame (§7.4.1).
NEVER_ON_THE_WIRE: Final = frozenset({1005, 1006, 1015})
#: The longest close reason: a control frame carries 125 bytes, 2 are the code (§5.5).
MAX_REASON_BYTES: Final = 123
# §7.4: codes an endpoint may put in a close frame it sends (3000-4999 are
# for libraries and applications).
_SENDABLE: Final = frozenset({1000, 1001, 1002, 1003, *range(1007, 1015)})
# Characters RFC 7230 forbids in a token, so in a subprotocol name.
_NOT_IN_TOKEN: Final = frozenset(' \t"(),/:;<=>?@[\\]{}')


def is_sendable(code: int) -> bool:
    """Whether an endpoint may send ``code`` in a close frame (RFC 6455 §7.4).

    >>> is_sendable(1000), is_sendable(1005), is_sendable(4000)
    (True, False, True)
    """
    return code in _SENDABLE or 3000 <= code <= 4999


def close_reason(code: int, reason: str) -> bytes:
    """Check a close frame the application asked for; return the reason as UTF-8.

    >>> close_reason(1000, "bye")
    b'bye'

    Raises:
        TypeError: ``code`` is not an ``int`` or ``reason`` not a ``str``.
        ValueError: ``code`` may not be sent (use 1000-1003, 1007-1014 or
            3000-4999) or ``reason`` is over 123 bytes of UTF-8.
    """
    if not isinstance(code, int) or isinstance(code, bool):
        raise TypeError(f"close code must be an int such as 1000, got {code!r}")
    if not isinstance(reason, str):
        raise TypeError(f"close reason must be a str, got {type(reason).__name__} {reason!r}")
    if not is_sendable(code):
        raise ValueError(
            f"close code {code} may not be sent; use 1000-1003, 1007-1014 or 3000-4999"
        )
    message = reason.encode()
    if len(message) > MAX_REASON_BYTES:
        raise ValueError(
            f"close reason is {len(message)} bytes of UTF-8; the limit is {MAX_REASON_BYTES}"
        )
    return message


def reply_code(received: int) -> int:
    """The code to answer a peer's close frame with: its own, when that may be sent (§5.5.1).

    >>> reply_code(1001), reply_code(2999)
    (1001, 1000)
    """
    return received if is_sendable(received) else int(CloseCode.OK)


def parse_protocols(header_values: Iterable[str]) -> tuple[str, ...]:
    """Split ``Sec-WebSocket-Protocol`` header values into names, in the client's order.

    >>> parse_protocols(["chat, superchat", " v2 "])
    ('chat', 'superchat', 'v2')
    """
    names = (part.strip() for value in header_values for part in value.split(","))
    return tuple(name for name in names if name)


def check_protocol_name(name: object) -> str:
    """Return ``name`` if it is a valid subprotocol token (RFC 7230 §3.2.6).

    Raises:
        TypeError: ``name`` is not a ``str``.
        ValueError: ``name`` is empty or holds spaces, commas or separators.
    """
    if not isinstance(name, str):
        raise TypeError(
            f"a WebSocket subprotocol is a str like 'spry-chat-v1', got {type(name).__name__} "
            f"{name!r}"
        )
    if not name or any(c in _NOT_IN_TOKEN for c in name):
        raise ValueError(
            f"invalid WebSocket subprotocol {name!r}: expected a non-empty token "
            "without spaces, commas or separators, like 'spry-chat-v1'"
        )
    return name


def is_upgrade_request(version: HttpVersion, headers: CIMultiDictProxy[str]) -> bool:
    """Whether a request asks for a WebSocket: ``Upgrade: websocket`` and ``Connection: upgrade``.

    Only these two headers decide (on HTTP/1.1 or later), so a handshake with a
    missing key or a bad version still counts and can be refused with 400.
    """
    if version < HttpVersion11:
        return False  # RFC 7230 §6.7: an HTTP/1.0 server ignores Upgrade
    if headers.get("Upgrade", "").strip().lower() != "websocket":
        return False
    connection = headers.get("Connection", "").lower()
    return connection == "upgrade" or "upgrade" in [t.strip() for t in connection.split(",")]
