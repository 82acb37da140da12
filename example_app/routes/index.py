"""``/``: the Spry quickstart's ``routes/index.dart``, ported (any method)."""

from __future__ import annotations

from aiohttp_spry import Event


def handler(event: Event) -> dict[str, str]:
    return {"message": "hello from spry", "runtime": "aiohttp", "path": event.pathname}
