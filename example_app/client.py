"""``python -m example_app.client [URL]``: the tutorial's ``test_websocket.dart`` in Python.

Connects (offering no subprotocol, like the tutorial's client), prints what it
receives, sends "Hello Spry!", closes after two seconds, and exits non-zero if
anything fails.
"""

from __future__ import annotations

import asyncio
import sys

import aiohttp

DEFAULT_URL = "ws://127.0.0.1:4000/chat"


async def run(url: str, *, linger: float = 2.0) -> int:
    print("Testing Spry WebSocket endpoint...", flush=True)
    try:
        async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
            print("✅ Connected to WebSocket server", flush=True)

            async def listen() -> None:
                async for message in ws:
                    if message.type is aiohttp.WSMsgType.TEXT:
                        print(f"📨 Received: {message.data}", flush=True)

            listener = asyncio.create_task(listen())
            await ws.send_str("Hello Spry!")
            print("📤 Sent: Hello Spry!", flush=True)
            await asyncio.sleep(linger)
            await ws.close()
            await listener
            print("🔄 Connection closed gracefully", flush=True)
            if ws.close_code != 1000:
                print(f"❌ Unexpected close code: {ws.close_code}", flush=True)
                return 1
    except (aiohttp.ClientError, OSError) as exc:
        print(f"❌ Failed to connect: {exc}", flush=True)
        return 1
    return 0


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    sys.exit(asyncio.run(run(args[0] if args else DEFAULT_URL)))


if __name__ == "__main__":
    main()
