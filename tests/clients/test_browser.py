"""Headless Chromium (Debian's, driven by Playwright) against ``python -m example_app``.

The WebSocket code runs in a page loaded from the server itself (its JSON
fallback at ``/chat``), so the browser sends that page's ``Origin`` as any real
page would. A page from another origin is refused, which only a browser can show
end to end: it sends an ``Origin`` it cannot be made to forge.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
import pytest

from tests.e2e.helpers import PROTOCOL, WELCOME, ServerProcess

from .helpers import wait_for_log

if TYPE_CHECKING:
    from collections.abc import Iterator

    from playwright.sync_api import Browser, Page, WebSocket

pytestmark = pytest.mark.e2e

NAVIGATION_TIMEOUT_MS = 15_000
#: Bounds each WebSocket exchange inside the page; evaluate() itself has no timeout.
EXCHANGE_TIMEOUT_MS = 8_000
CLEAN_CLOSE = {"code": 1000, "reason": "", "wasClean": True}

#: Opens a WebSocket, waits for the welcome, sends ``message``, waits for its echo,
#: closes with 1000, and reports everything it saw, including error and close events.
EXCHANGE_JS = """
async ({url, protocols, message, timeoutMs}) => new Promise((resolve) => {
  const result = {opened: false, protocol: null, messages: [], error: false,
                  close: null, timedOut: false, exception: null};
  let ws;
  try {
    ws = protocols === null ? new WebSocket(url) : new WebSocket(url, protocols);
  } catch (err) {
    result.exception = String(err);
    resolve(result);
    return;
  }
  const timer = setTimeout(() => { result.timedOut = true; ws.close(); resolve(result); },
                           timeoutMs);
  ws.onopen = () => { result.opened = true; result.protocol = ws.protocol; };
  ws.onmessage = (event) => {
    result.messages.push(event.data);
    if (result.messages.length === 1) ws.send(message);
    else if (result.messages.length === 2) ws.close(1000, "done");
  };
  ws.onerror = () => { result.error = true; };
  ws.onclose = (event) => {
    clearTimeout(timer);
    result.close = {code: event.code, reason: event.reason, wasClean: event.wasClean};
    resolve(result);
  };
})
"""


@attrs.define
class Tab:
    """A fresh page (its own context: no shared cookies or cache) with bounded waits,
    and the WebSocket handshake errors Chromium reported on it (``socketerror``)."""

    page: Page
    socket_errors: list[str] = attrs.field(factory=list)


@pytest.fixture
def tab(browser: Browser) -> Iterator[Tab]:
    context = browser.new_context()
    context.set_default_timeout(NAVIGATION_TIMEOUT_MS)
    try:
        tab = Tab(context.new_page())

        def watch(socket: WebSocket) -> None:
            socket.on("socketerror", lambda error: tab.socket_errors.append(error))

        tab.page.on("websocket", watch)
        yield tab
    finally:
        context.close()


def open_fallback(tab: Tab, url: str) -> None:
    """Load the route's HTTP fallback as the page the WebSocket code runs in."""
    response = tab.page.goto(url)
    assert response is not None
    assert response.status == 200
    body = response.json()
    assert body["message"] == "This endpoint supports WebSocket connections"
    assert body["upgradeRequest"] is False


def exchange(tab: Tab, url: str, protocols: list[str] | None, message: str) -> dict[str, Any]:
    result: dict[str, Any] = tab.page.evaluate(
        EXCHANGE_JS,
        {"url": url, "protocols": protocols, "message": message, "timeoutMs": EXCHANGE_TIMEOUT_MS},
    )
    assert result["timedOut"] is False, result
    assert result["exception"] is None, result
    return result


def assert_echoed(result: dict[str, Any], message: str, protocol: str) -> None:
    assert result["opened"] is True, result
    assert result["error"] is False, result
    assert result["protocol"] == protocol, result
    assert result["messages"] == [WELCOME, f"Echo: {message}"], result
    assert result["close"] == CLEAN_CLOSE, result


def assert_failed(result: dict[str, Any]) -> None:
    """The browser's view of a failed handshake: error event, then an abnormal 1006 close."""
    assert result["opened"] is False, result
    assert result["error"] is True, result
    assert result["messages"] == [], result
    assert result["close"] == {"code": 1006, "reason": "", "wasClean": False}, result


def test_same_origin_page_chats_with_and_without_subprotocol(
    tab: Tab, server: ServerProcess
) -> None:
    """From its own origin the browser connects and echoes; ``ws.protocol`` is
    ``spry-chat-v1`` only when the page offered it, ``""`` when it offered nothing."""
    open_fallback(tab, server.http_url)
    cases: dict[str, tuple[list[str] | None, str]] = {
        "no protocols argument": (None, ""),
        "empty protocol list": ([], ""),
        "offers spry-chat-v1 ✓": ([PROTOCOL], PROTOCOL),
        "offers other-chat then spry-chat-v1": (["other-chat", PROTOCOL], PROTOCOL),
    }
    seen = {}
    for message, (protocols, _) in cases.items():
        result = exchange(tab, server.url, protocols, message)
        seen[message] = (result["protocol"], result["messages"], result["close"], result["error"])
    expected = {
        message: (protocol, [WELCOME, f"Echo: {message}"], CLEAN_CLOSE, False)
        for message, (_, protocol) in cases.items()
    }
    assert seen == expected
    assert tab.socket_errors == []
    wait_for_log(
        server,
        "WebSocket connection established (protocol=None)",
        f"WebSocket connection established (protocol={PROTOCOL})",
        *(f"Received text: {message}" for message in cases),
    )
    assert "WARNING" not in server.log()


def test_unspoken_subprotocol_fails_in_the_browser(tab: Tab, server: ServerProcess) -> None:
    """The page offers only a subprotocol the route does not speak: the server accepts
    without one (and warns), and Chromium fails the connection (1006), as the README
    says. The same page then still chats with ``spry-chat-v1``."""
    open_fallback(tab, server.http_url)
    assert_failed(exchange(tab, server.url, ["unknown-proto"], "never sent"))
    assert len(tab.socket_errors) == 1, tab.socket_errors
    assert "Sec-WebSocket-Protocol" in tab.socket_errors[0], tab.socket_errors
    wait_for_log(
        server,
        "WARNING aiohttp_spry: WebSocket subprotocol mismatch, accepting without one",
        "client offered ['unknown-proto'], server speaks ['spry-chat-v1']",
    )
    assert_echoed(exchange(tab, server.url, [PROTOCOL], "after"), "after", PROTOCOL)


def test_cross_origin_page_is_refused(tab: Tab, server: ServerProcess) -> None:
    """A page from ``http://localhost:PORT`` is another origin than ``127.0.0.1:PORT``:
    its handshake is refused with 403 and the browser reports error and close 1006.
    The same page may talk to its own origin, ``ws://localhost:PORT``."""
    localhost = f"localhost:{server.port}"
    open_fallback(tab, f"http://{localhost}/chat")
    assert tab.page.evaluate("location.origin") == f"http://{localhost}"

    assert_failed(exchange(tab, server.url, [PROTOCOL], "never sent"))
    assert len(tab.socket_errors) == 1, tab.socket_errors
    assert "403" in tab.socket_errors[0], tab.socket_errors  # Chromium saw the refusal
    wait_for_log(
        server,
        f"WARNING aiohttp_spry: WebSocket handshake refused (origin 'http://{localhost}' "
        f"is not 127.0.0.1:{server.port})",
    )
    assert "WebSocket connection established" not in server.log()

    own = exchange(tab, f"ws://{localhost}/chat", [PROTOCOL], "same origin again")
    assert_echoed(own, "same origin again", PROTOCOL)
    assert len(tab.socket_errors) == 1, tab.socket_errors
