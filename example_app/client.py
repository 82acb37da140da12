"""``python -m example_app.client [URL] [--message M] [--protocol P]``: the tutorial's client.

The tutorial's ``test_websocket.dart`` in Python. Connects offering no
subprotocol (like the tutorial's client, unless ``--protocol``), waits for the
welcome, sends "Hello Spry!", waits for the echo, closes, and prints each step
as the tutorial's successful run did. Exits 1 if any step fails.

Any echo route will do: the reply must end with the message sent, so
``Echo: Hello Spry!`` (``/chat``) and ``Private echo: Hello Spry!``
(``/private/chat?token=let-me-in`` under ``--file-routes``) both pass. It needs
only aiohttp, so it also runs from any directory as a file:
``python path/to/example_app/client.py ws://host:port/chat``.
"""

from __future__ import annotations

import argparse
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


async def run(
    url: str,
    *,
    message: str = GREETING,
    protocols: tuple[str, ...] = (),
    timeout: float = 5.0,
) -> int:
    """Talk to the echo server at ``url``; return the process exit code."""
    print("Testing Spry WebSocket endpoint...", flush=True)
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(
                url, protocols=protocols, timeout=aiohttp.ClientWSTimeout(ws_close=timeout)
            ) as ws,
        ):
            print("✅ Connected to WebSocket server", flush=True)
            await _receive_text(ws, timeout)
            await ws.send_str(message)
            print(f"📤 Sent: {message}", flush=True)
            echo = await _receive_text(ws, timeout)
            if not echo.endswith(message):
                raise ConnectionError(f"expected an echo ending with {message!r}, got {echo!r}")
            await ws.close()
            print("🔄 Connection closed gracefully", flush=True)
    except aiohttp.WSServerHandshakeError as exc:
        print(f"❌ Handshake refused: HTTP {exc.status} {exc.message} ({url})", flush=True)
        return 1
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
        print(f"❌ Failed to connect: {type(exc).__name__}: {exc}", flush=True)
        return 1
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m example_app.client",
        description="Connect to an echo route, send one message, check the echo.",
    )
    parser.add_argument("url", nargs="?", default=DEFAULT_URL, help=f"({DEFAULT_URL})")
    parser.add_argument("--message", default=GREETING, help=f"what to send ({GREETING!r})")
    parser.add_argument(
        "--protocol", action="append", default=[], help="a subprotocol to offer (repeatable)"
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    sys.exit(asyncio.run(run(args.url, message=args.message, protocols=tuple(args.protocol))))


if __name__ == "__main__":
    main()
