"""WebSocket settings: extension-wide defaults, overridable per route and per upgrade."""

from __future__ import annotations

import enum
from typing import Any, Final

import attrs


class _Unset(enum.Enum):
    """Marks a keyword argument the caller did not pass (``None`` is a real value here)."""

    UNSET = enum.auto()

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset.UNSET


def _positive_or_none(_: Any, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and value <= 0:
        raise ValueError(
            f"{attribute.name} must be a positive number of seconds or None, got {value!r}"
        )


def _positive_size(_: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    # aiohttp reads 0 as "no limit"; anything negative is a mistake.
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0 bytes (0 = unlimited), got {value!r}")


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
        strict_protocols: refuse the handshake with 400 when the route offers
            subprotocols and none was agreed, instead of accepting without one.

    Example:
        >>> WebSocketSettings().evolve_from(heartbeat=30.0).heartbeat
        30.0
    """

    heartbeat: float | None = attrs.field(default=None, validator=_positive_or_none)
    max_msg_size: int = attrs.field(default=4 * 1024 * 1024, validator=_positive_size)
    compress: bool = True
    receive_timeout: float | None = attrs.field(default=None, validator=_positive_or_none)
    strict_protocols: bool = False

    def evolve_from(self, **overrides: Any) -> WebSocketSettings:
        """Return these settings with every override that is not ``UNSET`` applied.

        Raises:
            TypeError: an override names no setting.
            ValueError: an override has an invalid value.
        """
        given = {name: value for name, value in overrides.items() if value is not UNSET}
        if not given:
            return self
        unknown = sorted(set(given) - set(attrs.fields_dict(WebSocketSettings)))
        if unknown:
            raise TypeError(
                f"unknown WebSocket setting(s) {unknown}; "
                f"expected some of {sorted(attrs.fields_dict(WebSocketSettings))}"
            )
        return attrs.evolve(self, **given)
