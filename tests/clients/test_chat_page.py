"""The chat page at ``GET /`` (example_app/static/index.html) in headless Chromium.

Real parts only: ``python -m example_app`` in a subprocess (and a real
``redis-server`` where history must outlive a server restart), Debian's Chromium
driven by Playwright, the page's own inputs and buttons. The page shows
``connected`` once the server's welcome arrived (sent when the member is
subscribed); the tests also wait for the server's ``Member … (name) joined room
…`` log line before anybody speaks to it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import pytest

from tests.e2e.helpers import ServerProcess, start_example, stop_example
from tests.support.optional import require_tool
from tests.support.procs import HOST, free_port, subprocess_env
from tests.support.redisproc import RedisProcess, redis_server_path

from .helpers import wait_for_log

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Error, Locator, Page, expect
else:

    def expect(*args: Any, **kwargs: Any) -> Any:
        """Playwright's ``expect``, imported late: without Playwright the fixtures skip."""
        from playwright.sync_api import expect

        return expect(*args, **kwargs)


pytestmark = pytest.mark.e2e

TIMEOUT_MS = 10_000
#: The page retries after 0.5, 1, 2, 4, 5, 5 … s; a restart takes about a second.
RECONNECT_TIMEOUT_MS = 20_000
#: What Chromium logs when a WebSocket handshake fails (server down): allowed only then.
WEBSOCKET_FAILED = "WebSocket connection to '"


@attrs.define
class ChatPage:
    """The chat page in its own browser context, and what went wrong in it."""

    page: Page
    errors: list[str] = attrs.field(factory=list)

    @property
    def status(self) -> Locator:
        return self.page.locator("#status")

    @property
    def messages(self) -> Locator:
        return self.page.locator("#messages .message")

    @property
    def notices(self) -> Locator:
        return self.page.locator("#messages .notice")

    @property
    def members(self) -> Locator:
        return self.page.locator("#members li")

    def join(self, server: ServerProcess, name: str, room: str) -> None:
        """Join through the form; return once the server has subscribed the member."""
        self.page.fill("#name", name)
        self.page.fill("#room", room)
        self.page.click("#join")
        expect(self.status).to_have_text("connected", timeout=TIMEOUT_MS)
        wait_for_log(server, f"({name}) joined room {room!r}")

    def say(self, text: str, *, press_enter: bool = False) -> None:
        self.page.fill("#text", text)
        if press_enter:
            self.page.press("#text", "Enter")
        else:
            self.page.click("#send")
        expect(self.page.locator("#text")).to_have_value("")

    def expect_messages(self, *lines: str) -> None:
        """Exactly these messages, in this order (so none is missing or doubled)."""
        expect(self.messages).to_have_text(list(lines), timeout=TIMEOUT_MS)

    def unexpected_errors(self) -> list[str]:
        return [error for error in self.errors if WEBSOCKET_FAILED not in error]


OpenPage = Callable[[ServerProcess], ChatPage]


@pytest.fixture
def open_page(browser: Browser) -> Iterator[OpenPage]:
    """Opens ``GET /`` of a server in a fresh context; records uncaught exceptions
    (``pageerror``) and console errors and warnings."""
    contexts = []

    def open_page(server: ServerProcess) -> ChatPage:
        context = browser.new_context()
        contexts.append(context)
        context.set_default_timeout(TIMEOUT_MS)
        chat = ChatPage(context.new_page())

        def on_console(message: ConsoleMessage) -> None:
            if message.type in ("error", "warning"):
                chat.errors.append(f"console {message.type}: {message.text}")

        def on_page_error(error: Error) -> None:
            chat.errors.append(f"uncaught: {error}")

        chat.page.on("console", on_console)
        chat.page.on("pageerror", on_page_error)
        response = chat.page.goto(f"http://{HOST}:{server.port}/")
        assert response is not None
        assert response.status == 200
        assert response.headers["content-type"].startswith("text/html")
        expect(chat.status).to_have_text("not connected")
        return chat

    try:
        yield open_page
    finally:
        for context in contexts:
            context.close()


@attrs.define
class RestartableServer:
    """``python -m example_app`` on one fixed port, stopped and started again at will;
    each run logs to its own file."""

    directory: Path
    port: int = attrs.field(factory=free_port)
    runs: list[ServerProcess] = attrs.field(factory=list)
    env: dict[str, str] | None = None

    @property
    def current(self) -> ServerProcess:
        return self.runs[-1]

    def start(self) -> ServerProcess:
        log_path = self.directory / f"server-{len(self.runs)}.log"
        self.runs.append(start_example(log_path, port=self.port, env=self.env))
        return self.current

    def stop(self) -> None:
        """SIGINT (the server closes every WebSocket with 1001), kill after a timeout."""
        stop_example(self.current)


@pytest.fixture
def restartable_server(tmp_path: Path) -> Iterator[RestartableServer]:
    server = RestartableServer(tmp_path)
    try:
        server.start()
        yield server
    finally:
        for run in server.runs:
            stop_example(run)


def test_two_pages_in_a_room_see_each_others_messages_once_and_other_rooms_see_none(
    open_page: OpenPage, server: ServerProcess
) -> None:
    """Alice and Bob chat through the form (Enter and the Send button): each sees the
    other's message under the sender's name and its own once, as ``me``. Carol, in
    another room, sees none of it, only what is posted to her own room."""
    alice, bob, carol = (open_page(server) for _ in range(3))
    alice.join(server, "alice", "garden")
    bob.join(server, "bob", "garden")
    carol.join(server, "carol", "cellar")

    alice.say("hello bob", press_enter=True)
    bob.expect_messages("alice: hello bob")
    bob.say("hi alice")
    alice.expect_messages("me: hello bob", "bob: hi alice")
    bob.expect_messages("alice: hello bob", "me: hi alice")
    expect(alice.messages.nth(0)).to_have_class("message own")
    expect(alice.messages.nth(1)).to_have_class("message")

    # Delivered after the garden messages, so had Carol been sent those she would
    # already show them: her list is complete once this arrives.
    response = carol.page.request.post(
        f"http://{HOST}:{server.port}/rooms/cellar", data="cellar announcement"
    )
    assert response.ok, response.status
    assert set(response.json()) == {"room", "epoch", "offset"}
    carol.expect_messages("http: cellar announcement")
    alice.expect_messages("me: hello bob", "bob: hi alice")
    bob.expect_messages("alice: hello bob", "me: hi alice")

    for chat in (alice, bob, carol):
        assert chat.errors == [], chat.errors


def test_message_text_is_shown_as_text_never_as_markup(
    open_page: OpenPage, server: ServerProcess
) -> None:
    """HTML in a name or a message is displayed literally: no element is created, no
    handler runs, in the sender's page or the receiver's."""
    alice, bob = open_page(server), open_page(server)
    markup = '<img src="x" onerror="window.pwned = 1"><b>bold</b>'
    alice.join(server, "<i>alice</i>", "xss")
    bob.join(server, "bob", "xss")

    alice.say(markup)
    bob.expect_messages(f"<i>alice</i>: {markup}")
    alice.expect_messages(f"me: {markup}")
    for chat in (alice, bob):
        assert chat.page.locator("#messages img, #messages b, #messages i").count() == 0
        assert chat.page.evaluate("window.pwned") is None
        assert chat.errors == [], chat.errors


def test_normal_flow_has_no_console_errors_or_uncaught_exceptions(
    open_page: OpenPage, server: ServerProcess
) -> None:
    """Load, join, chat, switch rooms (the old socket closes without a reconnect),
    chat again, receive an HTTP announcement, reload: nothing in the console."""
    alice, bob = open_page(server), open_page(server)
    alice.join(server, "alice", "first")
    bob.join(server, "bob", "first")
    alice.say("in first")
    bob.expect_messages("alice: in first")

    alice.join(server, "alice", "second")  # switching clears the list
    wait_for_log(server, "left room 'first'")
    alice.expect_messages()
    bob.say("anyone in first?")
    bob.expect_messages("alice: in first", "me: anyone in first?")
    bob.join(server, "bob", "second")
    bob.say("found you")
    alice.expect_messages("bob: found you")
    assert alice.page.request.post(
        f"http://{HOST}:{server.port}/rooms/second", data="from outside"
    ).ok
    alice.expect_messages("bob: found you", "http: from outside")
    expect(alice.status).to_have_text("connected")

    alice.page.reload()
    expect(alice.status).to_have_text("not connected")
    for chat in (alice, bob):
        assert chat.errors == [], chat.errors


def test_page_reconnects_by_itself_after_a_server_restart_and_chats_again(
    open_page: OpenPage, restartable_server: RestartableServer
) -> None:
    """The server stops (closing the socket with 1001) and a new one starts on the
    same port: the page shows ``reconnecting…``, then ``connected`` without any
    user action, rejoined to the same room under the same name, and chats with a
    page that arrived after the restart."""
    first = restartable_server.current
    alice = open_page(first)
    alice.join(first, "alice", "phoenix")

    restartable_server.stop()
    assert "Closing 1 WebSocket session(s) with 1001" in first.log()
    expect(alice.status).to_have_text("reconnecting…", timeout=TIMEOUT_MS)

    second = restartable_server.start()
    expect(alice.status).to_have_text("connected", timeout=RECONNECT_TIMEOUT_MS)
    wait_for_log(second, "(alice) joined room 'phoenix'")

    bob = open_page(second)
    bob.join(second, "bob", "phoenix")
    bob.say("welcome back")
    alice.expect_messages("bob: welcome back")
    alice.say("thanks", press_enter=True)
    bob.expect_messages("me: welcome back", "alice: thanks")
    alice.expect_messages("bob: welcome back", "me: thanks")

    # The memory broker's history died with the first server: the page says so.
    expect(alice.page.locator("#messages .notice.warning")).to_have_count(1)
    expect(alice.page.locator("#messages .notice.warning")).to_contain_text(
        "could not be recovered"
    )
    # While the server was down Chromium may log failed handshakes; nothing else.
    assert alice.unexpected_errors() == [], alice.errors
    assert bob.errors == [], bob.errors


def test_messages_typed_while_disconnected_are_queued_and_sent_on_reconnect(
    open_page: OpenPage, restartable_server: RestartableServer
) -> None:
    """While the server is down a message is shown at once as ``(queued)``; once the
    page is connected again it is sent, in order, and no longer marked queued.

    The page's clock is paused while the server is down, so its reconnect (a timer)
    waits until Bob has joined the new server and can receive the queued messages."""
    first = restartable_server.current
    alice = open_page(first)
    alice.page.clock.install()
    alice.join(first, "alice", "queue")

    restartable_server.stop()
    expect(alice.status).to_have_text("reconnecting…", timeout=TIMEOUT_MS)
    alice.page.clock.pause_at(alice.page.evaluate("Date.now()") + 1)
    alice.say("typed offline")
    alice.say("typed offline too", press_enter=True)
    alice.expect_messages("me: typed offline (queued)", "me: typed offline too (queued)")
    expect(alice.messages.nth(0)).to_have_class("message own pending")

    second = restartable_server.start()
    bob = open_page(second)
    bob.join(second, "bob", "queue")
    expect(alice.status).to_have_text("reconnecting…")  # still waiting on its timer
    assert "(alice) joined" not in second.log()
    alice.page.clock.resume()
    expect(alice.status).to_have_text("connected", timeout=RECONNECT_TIMEOUT_MS)

    bob.expect_messages("alice: typed offline", "alice: typed offline too")
    alice.expect_messages("me: typed offline", "me: typed offline too")
    expect(alice.messages.nth(0)).to_have_class("message own")
    assert alice.unexpected_errors() == [], alice.errors
    assert bob.errors == [], bob.errors


def test_the_members_list_and_join_leave_notices_follow_the_room(
    open_page: OpenPage, server: ServerProcess
) -> None:
    alice, bob = open_page(server), open_page(server)
    alice.join(server, "alice", "members")
    expect(alice.members).to_have_text(["alice"])
    bob.join(server, "bob", "members")
    expect(bob.members).to_have_text(["alice", "bob"])
    expect(alice.members).to_have_text(["alice", "bob"])
    expect(alice.notices).to_have_text(["bob joined"])
    expect(alice.page.locator("#member-count")).to_have_text("2")
    bob.page.close()
    expect(alice.members).to_have_text(["alice"])
    expect(alice.notices).to_have_text(["bob joined", "bob left"])
    assert alice.errors == [], alice.errors


@pytest.fixture
def redis_server() -> Iterator[RedisProcess]:
    path = redis_server_path()
    require_tool("redis-server", path is not None, "apt-get install -y redis-server")
    assert path is not None
    redis = RedisProcess(path)
    try:
        redis.start()
        yield redis
    finally:
        redis.cleanup()


def test_a_page_whose_server_restarted_shows_what_it_missed_once_each(
    open_page: OpenPage, tmp_path: Path, redis_server: RedisProcess
) -> None:
    """Two servers share Redis; the page's server is stopped, three messages reach the
    room through the other one, the page's server comes back on the same port: the
    page reconnects with since= and shows the three, once each, and no warning."""
    env = subprocess_env({"SPRY_BROKER_URL": redis_server.url})
    restartable = RestartableServer(tmp_path, env=env)
    other = start_example(tmp_path / "other.log", env=env)
    try:
        first = restartable.start()
        alice, bob = open_page(first), open_page(other)
        alice.join(first, "alice", "phoenix")
        bob.join(other, "bob", "phoenix")
        bob.say("before the restart")
        alice.expect_messages("bob: before the restart")
        alice.say("me before")
        bob.expect_messages("me: before the restart", "alice: me before")

        restartable.stop()
        expect(alice.status).to_have_text("reconnecting…", timeout=TIMEOUT_MS)
        for n in range(3):
            bob.say(f"while away {n}")
        second = restartable.start()
        expect(alice.status).to_have_text("connected", timeout=RECONNECT_TIMEOUT_MS)
        wait_for_log(second, "(alice) joined room 'phoenix'", "recovered True, 3 replayed")
        alice.expect_messages(
            "bob: before the restart",
            "me: me before",
            "bob: while away 0",
            "bob: while away 1",
            "bob: while away 2",
        )
        bob.say("after")
        alice.expect_messages(
            "bob: before the restart",
            "me: me before",
            "bob: while away 0",
            "bob: while away 1",
            "bob: while away 2",
            "bob: after",
        )
        expect(alice.page.locator("#messages .notice.warning")).to_have_count(0)
        assert alice.unexpected_errors() == [], alice.errors
        assert bob.errors == [], bob.errors
    finally:
        for run in restartable.runs:
            stop_example(run)
        stop_example(other)
