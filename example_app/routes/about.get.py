"""``GET /about`` (and HEAD): the Spry quickstart's ``routes/about.get.dart``, ported."""

from __future__ import annotations

from aiohttp_spry import Event


def handler(event: Event) -> dict[str, str]:
    return {"page": "about", "method": event.method}
