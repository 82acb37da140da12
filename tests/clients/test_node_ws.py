"""Node's ``ws`` package, a widely used third-party client, against ``python -m example_app``.

``node_client.mjs`` connects once per case and prints what it saw as JSON lines;
these tests assert them. ``ws`` sends no ``Origin`` unless told to, like most
non-browser clients.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import PROTOCOL, WELCOME, ServerProcess
from tests.support.procs import subprocess_env

from .helpers import wait_for_log

pytestmark = pytest.mark.e2e

CLIENTS_DIR = Path(__file__).resolve().parent
SCRIPT = CLIENTS_DIR / "node_client.mjs"
NODE_TIMEOUT = 60.0


def run_node(node: str, server: ServerProcess, *cases: dict[str, Any]) -> list[dict[str, Any]]:
    """Run the ws client for ``cases``; return one result per case (after checking the header)."""
    completed = subprocess.run(
        [node, str(SCRIPT), server.url, *(json.dumps(case) for case in cases)],
        cwd=CLIENTS_DIR,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=NODE_TIMEOUT,
        env=subprocess_env(),
        check=False,
    )
    stdout = completed.stdout.decode("utf-8", errors="replace")
    stderr = completed.stderr.decode("utf-8", errors="replace")
    context = f"exit {completed.returncode}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    assert completed.returncode == 0, context
    header, *results = (json.loads(line) for line in stdout.splitlines() if line.strip())
    pinned = json.loads((CLIENTS_DIR / "package.json").read_text())["dependencies"]["ws"]
    assert header["client"] == "ws", context
    assert header["version"] == pinned, f"installed ws {header['version']}, pinned {pinned}"
    assert len(results) == len(cases), context
    for case, result in zip(cases, results, strict=True):
        assert result["timedOut"] is False, f"{case}: {result}"
    return results


def assert_echoed(result: dict[str, Any], message: str, protocol: str) -> None:
    assert result["opened"] is True, result
    assert result["error"] is None, result
    assert result["protocol"] == protocol, result
    assert result["messages"] == [WELCOME, f"Echo: {message}"], result
    assert result["close"] == {"code": 1000, "reason": ""}, result


def test_ws_with_and_without_subprotocol(node: str, server: ServerProcess) -> None:
    """``spry-chat-v1`` is selected only when offered; no offer connects without one."""
    cases: list[tuple[dict[str, Any], str]] = [
        ({"message": "no protocols argument"}, ""),
        ({"protocols": [], "message": "empty protocol list"}, ""),
        ({"protocols": [PROTOCOL], "message": "héllo spry ✓"}, PROTOCOL),
        ({"protocols": ["other-chat", PROTOCOL], "message": "second offer"}, PROTOCOL),
    ]
    results = run_node(node, server, *(case for case, _ in cases))
    for (case, protocol), result in zip(cases, results, strict=True):
        assert_echoed(result, case["message"], protocol)
    wait_for_log(
        server,
        "WebSocket connection established (protocol=None)",
        f"WebSocket connection established (protocol={PROTOCOL})",
        "Received text: héllo spry ✓",
    )
    assert "subprotocol mismatch" not in server.log()


def test_ws_fails_when_its_offer_is_not_spoken(node: str, server: ServerProcess) -> None:
    """An offer the route does not speak: the server accepts without a subprotocol and
    warns; ``ws``, like browsers, then fails the connection itself (RFC 6455 §4.1)."""
    [mismatch, after] = run_node(
        node, server, {"protocols": ["unknown-proto"]}, {"protocols": [PROTOCOL], "message": "ok"}
    )
    assert mismatch["opened"] is False, mismatch
    assert mismatch["error"] == "Server sent no subprotocol", mismatch
    assert mismatch["close"]["code"] == 1006, mismatch
    wait_for_log(
        server,
        "WARNING aiohttp_spry: WebSocket subprotocol mismatch, accepting without one",
        "client offered ['unknown-proto'], server speaks ['spry-chat-v1']",
    )
    assert_echoed(after, "ok", PROTOCOL)  # the server is unaffected


def test_ws_origin_header_is_checked(node: str, server: ServerProcess) -> None:
    """A client claiming a foreign page origin gets 403; the server's own origin is fine."""
    [foreign, same] = run_node(
        node,
        server,
        {"origin": "http://evil.example"},
        {"origin": f"http://127.0.0.1:{server.port}", "message": "same origin"},
    )
    assert foreign["opened"] is False, foreign
    assert foreign["error"] == "Unexpected server response: 403", foreign
    assert foreign["messages"] == [], foreign
    assert_echoed(same, "same origin", "")
    wait_for_log(
        server,
        "WARNING aiohttp_spry: WebSocket handshake refused (origin 'http://evil.example' "
        f"is not 127.0.0.1:{server.port})",
    )
