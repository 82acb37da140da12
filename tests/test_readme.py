"""The README's example runs as written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType

README = Path(__file__).resolve().parent.parent / "README.md"


def first_python_block() -> str:
    match = re.search(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    assert match, "README.md has no python example"
    return match.group(1)


async def test_readme_example_serves_fallback_and_echo(aiohttp_client: Any) -> None:
    namespace: dict[str, Any] = {"__name__": "readme_example"}
    exec(compile(first_python_block(), str(README), "exec"), namespace)
    client = await aiohttp_client(namespace["app"])

    fallback = await (await client.get("/chat")).json()
    assert fallback["message"] == "This endpoint supports WebSocket connections"

    async with client.ws_connect("/chat", protocols=("spry-chat-v1",)) as ws:
        assert ws.protocol == "spry-chat-v1"
        assert (await ws.receive_str()).startswith("Connected to Spry WebSocket server!")
        await ws.send_str("hi")
        assert await ws.receive_str() == "Echo: hi"
        await ws.send_bytes(b"\x01")
        assert await ws.receive_str() == "[Binary data received, not echoed]"
        await ws.close()
        assert ws.close_code == 1000
    async with client.ws_connect("/chat") as ws:
        assert ws.protocol is None
        assert (await ws.receive()).type is WSMsgType.TEXT
