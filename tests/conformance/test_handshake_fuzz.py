"""Random and mutated upgrade requests over a raw socket: never a 5xx, never a dead server.

The test is synchronous and drives its own event loop with its own
``web.AppRunner`` on 127.0.0.1, so one server lives through every Hypothesis
example (no function-scoped fixture is shared between examples) and is checked
afterwards: a valid handshake still gets 101 and an echo.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import string

import attrs
import pytest
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiohttp_spry import Event, Spry

from ..conftest import ClientFactory
from ..support.wire import close_payload
from .checks import CLOSE, ConformanceSocket, accept_for, assert_no_traceback, client_frame
from .conftest import echo

SERVER_PROTOCOLS = ("chat", "superchat")
#: Each read of an answer waits at most this long (a request the server is still
#: waiting to complete gets no answer; that is allowed, but it must be rare).
ANSWER_TIMEOUT = 2.0
OWN_HOST = "{own}"  # replaced by 127.0.0.1:<port> when sent


def fuzz_spry() -> Spry:
    spry = Spry()

    @spry.route("/echo")
    def echo_route(event: Event) -> web.StreamResponse | dict[str, str]:
        if not event.ws.is_upgrade_request:
            return {"message": "WebSocket echo"}
        return event.ws.upgrade(echo)

    @spry.route("/chat")
    def chat(event: Event) -> web.StreamResponse:
        return event.ws.upgrade(echo, protocols=SERVER_PROTOCOLS)

    @spry.route("/strict")
    def strict(event: Event) -> web.StreamResponse:
        return event.ws.upgrade(echo, protocol="chat", strict_protocols=True)

    @spry.route("/origins")
    def origins(event: Event) -> web.StreamResponse:
        return event.ws.upgrade(echo, allowed_origins=["https://app.example"])

    return spry


# --- the requests -------------------------------------------------------------------------

TOKEN = st.text(alphabet=string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~", min_size=1)
PRINTABLE_TEXT = st.text(alphabet=string.printable.replace("\r", "").replace("\n", ""), max_size=40)
LINE_SAFE_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=40
).map(str.encode)
LINE_SAFE_BYTES = st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
VALID_KEY = st.binary(min_size=16, max_size=16).map(lambda b: base64.b64encode(b).decode())


def values(*fixed: str) -> st.SearchStrategy[bytes]:
    """A header value: mostly the interesting ones listed, sometimes anything on one line."""
    listed = st.sampled_from([v.encode() for v in fixed])
    return st.one_of(
        listed,
        listed,
        listed,
        listed,
        PRINTABLE_TEXT.map(str.encode),
        LINE_SAFE_TEXT,
        LINE_SAFE_BYTES,
    )


PROTOCOL_LISTS = st.one_of(
    values(
        "chat",
        "superchat",
        "chat, superchat",
        "superchat, chat",
        "other",
        "other, chat",
        "chat,,superchat",
        ",",
        "",
        "chat superchat",
        "CHAT",
        "ch@t",
        "x" * 300,
    ),
    st.lists(st.sampled_from(["chat", "superchat", "other", " ", ""]) | TOKEN, max_size=6).map(
        lambda names: ", ".join(names).encode()
    ),
)

HEADER_VALUES: dict[str, st.SearchStrategy[bytes]] = {
    "Host": values("127.0.0.1", OWN_HOST, "", "evil.example", "[::1]", "a:b:c", "127.0.0.1:99999"),
    "Upgrade": values("websocket", "WebSocket", " websocket ", "websocket, h2c", "h2c", ""),
    "Connection": values("Upgrade", "upgrade", "keep-alive, Upgrade", "close", "Upgrade,,", ""),
    "Sec-WebSocket-Key": st.one_of(
        VALID_KEY.map(str.encode),
        values(
            "",
            "short",
            base64.b64encode(b"x" * 15).decode(),
            base64.b64encode(b"x" * 17).decode(),
            "not base64 at all!!",
            "=" * 24,
            "A" * 1000,
        ),
    ),
    "Sec-WebSocket-Version": values(
        "13", "8", "7", "12", "14", "", "13, 8", "013", "+13", "-1", "9" * 30, "thirteen"
    ),
    "Sec-WebSocket-Protocol": PROTOCOL_LISTS,
    "Sec-WebSocket-Extensions": values(
        "permessage-deflate",
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate; server_max_window_bits=8",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=99999999999999999999",
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        "permessage-deflate; x=y",
        "permessage-deflate, permessage-deflate",
        "permessage-deflate;;;",
        "x-webkit-deflate-frame",
    ),
    "Origin": values(
        "null",
        f"http://{OWN_HOST}",
        f"https://{OWN_HOST}",
        "https://evil.example",
        "https://app.example",
        "https://APP.example:443/",
        "garbage",
        "http://[::1",
        "http://a:99999",
        "http://xn--ls8h.example",
        "http://ex ample",
        "file://",
        "https://app.example/path?q=1",
    ),
    "Content-Length": values("0", "5", "-1", "abc", "9" * 25),
    "Transfer-Encoding": values("chunked", "gzip, chunked", "identity"),
}
BASE_HEADERS = ("Host", "Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version")
OPTIONAL_HEADERS = tuple(name for name in HEADER_VALUES if name not in BASE_HEADERS)


@attrs.frozen
class Probe:
    raw: bytes
    #: Only the bytes were generated in one piece, with no random damage on top.
    clean: bool
    headers: tuple[tuple[bytes, bytes], ...]

    def sent(self, name: str) -> list[str]:
        wanted = name.lower().encode()
        return [
            v.decode("utf-8", "replace") for n, v in self.headers if n.strip().lower() == wanted
        ]


def header_name(name: str) -> st.SearchStrategy[bytes]:
    return st.sampled_from(
        [
            name.encode(),
            name.encode(),
            name.encode(),
            name.lower().encode(),
            name.upper().encode(),
            name.replace("-", "_").encode(),
            name.encode() + b" ",  # whitespace before the colon: invalid (RFC 9112 §5.1)
        ]
    )


def base_value(name: str, key: str) -> bytes:
    return {
        "Host": OWN_HOST,
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": key,
        "Sec-WebSocket-Version": "13",
    }[name].encode()


@st.composite
def probes(draw: st.DrawFn) -> Probe:
    """A handshake: near-valid (reaches the route's checks), mutated, or damaged bytes."""
    kind = draw(st.sampled_from(["near-valid"] * 5 + ["mutated"] * 3 + ["damaged"] * 2))
    near_valid = kind == "near-valid"
    if near_valid:
        method, version = "GET", "HTTP/1.1"
        path = draw(st.sampled_from(["/echo", "/chat", "/strict", "/origins"]))
    else:
        method = draw(
            st.sampled_from(["GET"] * 4 + ["HEAD", "POST", "PUT", "OPTIONS", "CONNECT", "get"])
            | TOKEN
        )
        path = draw(
            st.sampled_from(["/echo", "/chat", "/strict", "/origins"] * 2)
            | st.sampled_from(["/", "/missing", "/echo?x=1", "//echo", "/ech%6F", "/%zz", "*"])
            | st.sampled_from(["http://127.0.0.1/chat", "/chat#frag", "/" + "a" * 2000])
        )
        version = draw(
            st.sampled_from(["HTTP/1.1"] * 6)
            | st.sampled_from(["HTTP/1.0", "HTTP/0.9", "HTTP/2.0", "HTTP/1.2", "HTTP/11"])
            | st.sampled_from(["http/1.1", "HTTP/1.1 x", "HTTP /1.1", ""])
        )
    key = draw(VALID_KEY)
    headers: list[tuple[bytes, bytes]] = []
    mutable = draw(st.sets(st.sampled_from(BASE_HEADERS), max_size=1 if near_valid else 5))
    for name in BASE_HEADERS:
        valid = base_value(name, key)
        action = "keep"
        if name in mutable:
            action = draw(st.sampled_from(["drop", "mutate", "mutate", "duplicate", "rename"]))
        if action == "keep":
            headers.append((name.encode(), valid))
        elif action == "mutate":
            headers.append((name.encode(), draw(HEADER_VALUES[name])))
        elif action == "duplicate":
            headers += [(name.encode(), valid), (name.encode(), draw(HEADER_VALUES[name]))]
        elif action == "rename":
            headers.append((draw(header_name(name)), valid))
    optional = OPTIONAL_HEADERS[:3] if near_valid else OPTIONAL_HEADERS
    for name in draw(st.lists(st.sampled_from(optional), max_size=3)):
        headers.append(
            (
                draw(header_name(name)) if not near_valid else name.encode(),
                draw(HEADER_VALUES[name]),
            )
        )
    if not near_valid:
        headers += draw(st.lists(st.tuples(TOKEN.map(str.encode), LINE_SAFE_BYTES), max_size=2))
    headers = draw(st.permutations(headers))

    raw = b"\r\n".join(
        [f"{method} {path} {version}".encode(), *(n + b": " + v for n, v in headers)]
    )
    raw += b"\r\n\r\n"
    if kind == "damaged":
        damage = draw(st.sampled_from(["insert", "flip", "prefix", "replace"]))
        if damage == "insert":
            at = draw(st.integers(0, len(raw)))
            raw = raw[:at] + draw(st.binary(min_size=1, max_size=20)) + raw[at:]
        elif damage == "flip":
            at = draw(st.integers(0, len(raw) - 1))
            raw = raw[:at] + bytes([raw[at] ^ draw(st.integers(1, 255))]) + raw[at + 1 :]
        elif damage == "prefix":
            raw = draw(st.binary(min_size=1, max_size=20)) + raw
        else:
            # Not only blank lines, which a server skips while it waits for a request.
            raw = draw(st.binary(min_size=1, max_size=200).filter(bytes.strip))
        if not raw.endswith(b"\r\n\r\n"):
            raw += b"\r\n\r\n"  # a complete head, so the server has something to answer
    return Probe(raw, kind != "damaged", tuple(headers))


# --- one exchange -------------------------------------------------------------------------


@attrs.frozen
class Outcome:
    status: int | None  # None: no answer (dropped, or still waiting for more input)


async def exchange(port: int, probe: Probe) -> Outcome:
    """Send the probe and judge the answer."""
    raw = probe.raw.replace(OWN_HOST.encode(), f"127.0.0.1:{port}".encode())
    conn = await ConformanceSocket.connect("127.0.0.1", port)
    try:
        with contextlib.suppress(ConnectionError):
            await conn.send(raw)
        try:
            head = await asyncio.wait_for(conn.reader.readuntil(b"\r\n\r\n"), ANSWER_TIMEOUT)
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError) as no_head:
            partial = getattr(no_head, "partial", b"")
            assert_no_traceback(partial)
            assert not partial.startswith(b"HTTP/1.1 5"), partial
            return Outcome(None)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1])
        reply: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            reply.setdefault(name.strip().lower(), value.strip())
        if status == 101:
            await judge_upgrade(conn, probe, reply)
        else:
            await judge_refusal(conn, probe, status)
        return Outcome(status)
    finally:
        conn.writer.transport.abort()


def assert_not_5xx(probe: Probe, status: int) -> None:
    assert status < 500, f"{status} for {probe.raw!r}"


async def judge_refusal(conn: ConformanceSocket, probe: Probe, status: int) -> None:
    assert_not_5xx(probe, status)
    # Half-close: the server finishes its answer and ends the connection.
    with contextlib.suppress(ConnectionError, OSError, RuntimeError):
        conn.writer.write_eof()
    with contextlib.suppress(asyncio.TimeoutError, ConnectionError):
        body = await asyncio.wait_for(conn.reader.read(65536), ANSWER_TIMEOUT)
        assert_no_traceback(body)


async def judge_upgrade(conn: ConformanceSocket, probe: Probe, reply: dict[str, str]) -> None:
    if probe.clean:
        keys = probe.sent("Sec-WebSocket-Key")
        # RFC 6455 §4.2.2: the accept value answers the key the client sent.
        assert reply.get("sec-websocket-accept") in {accept_for(k.strip(" \t")) for k in keys}
        # Subprotocols are negotiated, never assumed: only one the client offered
        # (on the first line, as aiohttp reads it) and the route speaks.
        agreed = reply.get("sec-websocket-protocol")
        if agreed is not None:
            offered = probe.sent("Sec-WebSocket-Protocol")
            assert offered, f"protocol {agreed!r} agreed but none offered: {probe.raw!r}"
            assert agreed in [p.strip() for p in offered[0].split(",")], (agreed, probe.raw)
            assert agreed in SERVER_PROTOCOLS, agreed
    if probe.clean and not probe.sent("Content-Length") and not probe.sent("Transfer-Encoding"):
        # The session runs: a close is answered with a close.
        await conn.send(client_frame(CLOSE, close_payload(1000)))
        frame = await asyncio.wait_for(conn.read_until_close(), ANSWER_TIMEOUT)
        assert frame.close_code == 1000, frame


async def valid_handshake_still_works(port: int) -> None:
    conn = await ConformanceSocket.open(port, "/chat", headers={"Sec-WebSocket-Protocol": "chat"})
    await conn.echo_round_trip("after the fuzz")
    await conn.close_cleanly()
    plain = await ConformanceSocket.connect("127.0.0.1", port)
    reply = await plain.request("/echo", headers={"Upgrade": None, "Connection": "close"})
    assert reply.status == 200
    assert_no_traceback(reply.body)
    await plain.aclose()


def assert_only_parser_errors_logged(caplog: pytest.LogCaptureFixture) -> None:
    """No handler or session failed: aiohttp_spry logged no ERROR, and aiohttp's ERRORs
    are all its parser refusing a malformed request (it logs those at ERROR and answers
    400 itself; only a bad method on a connection's first request is logged at DEBUG).
    """
    for record in caplog.records:
        if record.levelno < logging.ERROR:
            continue
        assert record.name == "aiohttp.server", record.getMessage()
        assert record.exc_info is not None, record.getMessage()
        assert record.exc_info[0] is not None
        assert issubclass(record.exc_info[0], HttpProcessingError), record.exc_info


# --- the tests ----------------------------------------------------------------------------


def test_random_and_mutated_handshakes_never_get_a_5xx_nor_stop_the_server(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    loop = asyncio.new_event_loop()
    app = web.Application()
    fuzz_spry().init_app(app)
    runner = web.AppRunner(app)
    outcomes: list[Outcome] = []
    try:
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
        port = runner.addresses[0][1]

        @settings(
            max_examples=150,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(probe=probes())
        def probe_server(probe: Probe) -> None:
            outcomes.append(loop.run_until_complete(exchange(port, probe)))

        probe_server()
        loop.run_until_complete(valid_handshake_still_works(port))
    finally:
        loop.run_until_complete(runner.cleanup())
        loop.close()
    assert_only_parser_errors_logged(caplog)
    statuses = [o.status for o in outcomes]
    # The generator must reach the server's interesting branches, not only its parser.
    assert 101 in statuses and 400 in statuses and statuses.count(None) < len(statuses) // 10


async def test_http10_upgrade_headers_are_ignored_not_refused_with_5xx(
    serve: ClientFactory,
) -> None:
    # RFC 7230 §6.7: a server ignores Upgrade on HTTP/1.0, so the route's HTTP
    # fallback answers; never a 5xx for a client's choice of version.
    client = await serve(fuzz_spry())
    assert client.port is not None
    conn = await ConformanceSocket.connect("127.0.0.1", client.port)
    reply = await conn.request("/echo", version="HTTP/1.0")
    await conn.aclose()
    assert reply.status == 200, reply


@pytest.mark.parametrize(
    "key",
    [b"\xc2\x80", b"\xff" * 24, "dGhlIHNhbXBsZSBub25jZQ=é".encode()],
    ids=["utf8-c1-control", "latin1-bytes", "base64-with-e-acute"],
)
async def test_handshake_with_a_non_ascii_key_is_refused_with_400(
    serve: ClientFactory, caplog: pytest.LogCaptureFixture, key: bytes
) -> None:
    client = await serve(fuzz_spry())
    assert client.port is not None
    conn = await ConformanceSocket.connect("127.0.0.1", client.port)
    await conn.send(
        b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: "
        + key
        + b"\r\n\r\n"
    )
    head = await asyncio.wait_for(conn.reader.readuntil(b"\r\n\r\n"), 5)
    await conn.aclose()
    assert head.startswith(b"HTTP/1.1 400 "), head
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
