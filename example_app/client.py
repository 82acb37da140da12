"""``python -m example_app.client [URL]``: the tutorial's ``test_websocket.dart`` in Python.

Connects offering no subprotocol (like the tutorial's client), waits for the
welcome, sends "Hello Spry!", waits for the echo, closes, and prints each step
as the tutorial's successful run did. Exits 1 if any step fails.
"""

from __future__ import annotations

import asyncio
import sys

import aiohttp

DEFAULT_URL = "ws://127.0.0.1:4000/chat"
GREETING = "Hello Spry!"


async def _receive_text(ws: aiohttp.ClientWebSocketResponse[bool], timeout: float) -> str:
    message = await ws.receive(timeout=timeout)
    if message.type is not aiohttp.WSMsgType.TEXT:
        raise ConnectionError(f"expected a text message, got {message.type.name} {message.data!r}")
    text: str = message.data
    print(f"📨 Received: {text}", flush=True)
    return text


async def run(url: str, *, timeout: float = 5.0) -> int:
    """Talk to the echo server at ``url``; return the process exit code."""
    print("Testing Spry WebSocket endpoint...", flush=True)
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=timeout)) as ws,
        ):
            print("✅ Connected to WebSocket server", flush=True)
            await _receive_text(ws, timeout)
            await ws.send_str(GREETING)
            print(f"📤 Sent: {GREETING}", flush=True)
            echo = await _receive_text(ws, timeout)
            if echo != f"Echo: {GREETING}":
                raise ConnectionError(f"expected 'Echo: {GREETING}', got {echo!r}")
            await ws.close()
            print("🔄 Connection closed gracefully", flush=True)
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
        print(f"❌ Failed to connect: {type(exc).__name__}: {exc}", flush=True)
        return 1
    return 0


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    sys.exit(asyncio.run(run(args[0] if args else DEFAULT_URL)))


if __name__ == "__main__":
    main()
