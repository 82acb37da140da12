"""WebSocket settings: extension-wide defaults, overridable per route and per upgrade."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypedDict

import attrs
from yarl import URL


def _positive_or_none(_: Any, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and value <= 0:
        raise ValueError(
            f"{attribute.name} must be a positive number of seconds or None, got {value!r}"
        )


def _positive_size(_: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    # aiohttp reads 0 as "no limit"; anything negative is a mistake.
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0 bytes (0 = unlimited), got {value!r}")


def normalize_origin(origin: str) -> str:
    """``HTTPS://Example.com:443/`` → ``https://example.com``: how origins are compared.

    Raises:
        ValueError: ``origin`` is not ``scheme://host[:port]``.
    """
    url = URL(origin.strip())
    if not url.scheme or not url.host or url.path not in ("", "/") or url.query_string:
        raise ValueError(
            f"an origin is scheme://host[:port], like 'https://example.com', got {origin!r}"
        )
    default_port = {"http": 80, "https": 443, "ws": 80, "wss": 443}.get(url.scheme.lower())
    port = "" if url.port in (None, default_port) else f":{url.port}"
    return f"{url.scheme.lower()}://{url.host.lower()}{port}"


def _origins(value: Iterable[str] | str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    return tuple(origin if origin == "*" else normalize_origin(origin) for origin in value)


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

    heartbeat: float | None = attrs.field(default=None, validator=_positive_or_none)
    max_msg_size: int = attrs.field(default=4 * 1024 * 1024, validator=_positive_size)
    compress: bool = True
    receive_timeout: float | None = attrs.field(default=None, validator=_positive_or_none)
    send_timeout: float | None = attrs.field(default=30.0, validator=_positive_or_none)
    strict_protocols: bool = False
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
