"""Settings and their validation: the extension's own, and the WebSocket ones (extension-wide
defaults, overridable per route and per upgrade)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypedDict

import attrs
from yarl import URL


def _seconds_or_none(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(
            f"{attribute.name} must be a number of seconds or None, "
            f"got {type(value).__name__} {value!r}"
        )
    if value <= 0:
        raise ValueError(
            f"{attribute.name} must be a positive number of seconds or None, got {value!r}"
        )


def _byte_count(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(
            f"{attribute.name} must be an int number of bytes, got {type(value).__name__} {value!r}"
        )
    # aiohttp reads 0 as "no limit"; anything negative is a mistake.
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0 bytes (0 = unlimited), got {value!r}")


def _flag(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, bool):
        raise TypeError(
            f"{attribute.name} must be True or False, got {type(value).__name__} {value!r}"
        )


def normalize_origin(origin: str) -> str:
    """``HTTPS://Example.com:443/`` → ``https://example.com``: how origins are compared.

    >>> normalize_origin("HTTPS://Example.com:443/")
    'https://example.com'

    Raises:
        ValueError: ``origin`` is not ``scheme://host[:port]``.
    """
    url = URL(origin.strip())
    if (
        not url.absolute
        or not url.scheme
        or not url.host
        or url.path not in ("", "/")
        or url.query_string
        or url.fragment
        or url.user is not None
    ):
        raise ValueError(
            f"an origin is scheme://host[:port], like 'https://example.com', got {origin!r}"
        )
    return str(url.origin())


def _origins(value: Iterable[str] | str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    try:
        origins = tuple(value)
    except TypeError:
        raise TypeError(
            f"allowed_origins must be a str or a list of str like ['https://example.com'], "
            f"got {type(value).__name__} {value!r}"
        ) from None
    for origin in origins:
        if not isinstance(origin, str):
            raise TypeError(
                f"allowed_origins holds {type(origin).__name__} {origin!r}; each origin is a str "
                "like 'https://example.com' (or '*')"
            )
    return tuple(origin if origin == "*" else normalize_origin(origin) for origin in origins)


@attrs.frozen
class WebSocketSettings:
    """How a WebSocket session is accepted and run.

    Set extension-wide with ``Spry(app, heartbeat=30.0)``, per route with
    ``@spry.route("/chat", max_msg_size=64 * 1024)`` and per handshake with
    ``event.ws.upgrade(session, strict_protocols=True)``; the narrowest wins.

    Attributes:
        heartbeat: seconds between server pings; a peer that misses the pong is
            dropped. ``None`` (default) sends no pings.
        max_msg_size: largest message accepted, in bytes; a bigger one closes the
            session with 1009. ``0`` means unlimited. Default 4 MiB (aiohttp's).
        compress: offer permessage-deflate when the client asks for it.
        receive_timeout: seconds of silence from the peer after which the session
            is closed with 1008; ``None`` (default) waits forever.
        send_timeout: seconds a send may wait for a peer that is not reading
            (its send buffer full) before the session is closed with 1008 and
            the connection aborted. ``None`` waits forever. Default 30.
        strict_protocols: refuse the handshake with 400 when the route offers
            subprotocols and none was agreed, instead of accepting without one.
        allowed_origins: origins (``"https://example.com"``) whose pages may
            open a WebSocket besides the server's own; ``"*"`` allows any. A
            handshake whose ``Origin`` is neither same-origin nor listed gets
            403 (cross-site WebSocket hijacking). Clients that send no
            ``Origin`` (not browsers) are not affected. Default: same origin.

    Example:
        >>> WebSocketSettings().evolve_from(heartbeat=30.0).heartbeat
        30.0
    """

    heartbeat: float | None = attrs.field(default=None, validator=_seconds_or_none)
    max_msg_size: int = attrs.field(default=4 * 1024 * 1024, validator=_byte_count)
    compress: bool = attrs.field(default=True, validator=_flag)
    receive_timeout: float | None = attrs.field(default=None, validator=_seconds_or_none)
    send_timeout: float | None = attrs.field(default=30.0, validator=_seconds_or_none)
    strict_protocols: bool = attrs.field(default=False, validator=_flag)
    allowed_origins: tuple[str, ...] = attrs.field(default=(), converter=_origins)

    def evolve_from(self, **overrides: Any) -> WebSocketSettings:
        """Return these settings with ``overrides`` applied.

        Raises:
            TypeError: an override names no setting.
            ValueError: an override has an invalid value.
        """
        if not overrides:
            return self
        unknown = sorted(set(overrides) - set(attrs.fields_dict(WebSocketSettings)))
        if unknown:
            raise TypeError(
                f"unknown WebSocket setting(s) {unknown}; "
                f"expected some of {sorted(attrs.fields_dict(WebSocketSettings))}"
            )
        return attrs.evolve(self, **overrides)


class WebSocketOptions(TypedDict, total=False):
    """The keyword arguments that set :class:`WebSocketSettings` (for type checkers)."""

    heartbeat: float | None
    max_msg_size: int
    compress: bool
    receive_timeout: float | None
    send_timeout: float | None
    strict_protocols: bool
    allowed_origins: Iterable[str] | str


def _positive_seconds(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    _seconds_or_none(_, attribute, value)
    if value is None:
        raise TypeError(f"{attribute.name} must be a positive number of seconds, got None")


def _count_at_least_one(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{attribute.name} must be an int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{attribute.name} must be >= 1, got {value!r}")


def _count_or_none(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        _count_at_least_one(_, attribute, value)


@attrs.frozen
class ExtensionSettings:
    """The :class:`~aiohttp_spry.Spry` extension's own settings, checked once.

    Attributes:
        debug: put tracebacks in 500 responses (never in production).
        shutdown_timeout: seconds ``on_shutdown`` waits for sessions to close with 1001.
        max_sessions: the most WebSocket sessions per application (``None``: no cap).
        max_queued: the most published messages a slow subscriber may have waiting.

    >>> ExtensionSettings(max_sessions="10")
    Traceback (most recent call last):
    ...
    TypeError: max_sessions must be an int, got str '10'
    """

    debug: bool = attrs.field(default=False, validator=_flag)
    shutdown_timeout: float = attrs.field(default=3.0, validator=_positive_seconds)
    max_sessions: int | None = attrs.field(default=None, validator=_count_or_none)
    max_queued: int = attrs.field(default=1000, validator=_count_at_least_one)
