"""The load client: raw non-blocking sockets on a bare ``epoll`` loop, prebuilt bytes.

Per message the client does almost nothing: it counts received bytes (every
echo has the same, known size), and for every echo completed it sends one
more prebuilt masked frame, batched into one ``send()`` per read. A sample of
reads (every ``sample_every``-th per connection) is decoded frame by frame and
compared with what was sent; ``sample_every=1`` decodes every frame (the smoke
test). After the measured window the client stops sending, waits for every
outstanding echo and checks the byte count is exact, then closes each
connection with a close frame and checks the server's close frame and FIN.

Why not asyncio: measured on the 2-core box, asyncio's per-read machinery
(selector, transport, protocol callback) cost the client about as much CPU per
echo as the fastest server spent, and ``create_connection`` about 320 µs per
handshake against about 100 µs here; a bare ``epoll`` loop leaves the client
with head-room on every figure (see "Is the client the bottleneck?" in
RESULTS.md).
"""

from __future__ import annotations

import errno
import select
import socket
import time
from collections.abc import Callable
from typing import Any

import attrs

from .frames import (
    OP_CLOSE,
    OP_TEXT,
    WS_ACCEPT,
    Payload,
    check_handshake_response,
    client_frame,
    close_payload,
    handshake_request,
    parse_frame,
    server_frame,
    text_payload,
)

HOST = "127.0.0.1"
CLOSE_REQUEST = client_frame(OP_CLOSE, close_payload(1000))
CLOSE_REPLY = server_frame(OP_CLOSE, close_payload(1000))
MAX_ERRORS_KEPT = 20
# At most this many frames decoded per sampled read, so a sample stays cheap
# whatever the read size.
FRAMES_PER_SAMPLE = 8
READ_SIZE = 1 << 18
EPOLLIN, EPOLLOUT = select.EPOLLIN, select.EPOLLOUT
EPOLL_BROKEN = select.EPOLLERR | select.EPOLLHUP


@attrs.define
class Totals:
    """Counters shared by all connections of one run."""

    echoed: int = 0
    verified: int = 0
    handshakes: int = 0
    errors: list[str] = attrs.Factory(list)
    error_count: int = 0

    def error(self, what: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(what)


@attrs.frozen
class Window:
    """What happened during the measured window."""

    count: int
    seconds: float
    client_cpu: float
    server_cpu: float

    @property
    def rate(self) -> float:
        return self.count / self.seconds

    @property
    def client_share(self) -> float:
        """The client's CPU use during the window, as a fraction of one core."""
        return self.client_cpu / self.seconds

    @property
    def server_share(self) -> float:
        return self.server_cpu / self.seconds


@attrs.frozen
class RunResult:
    window: Window
    verified: int
    errors: tuple[str, ...]
    error_count: int
    extra: dict[str, Any] = attrs.Factory(dict)


def _no_server_cpu() -> float:
    return 0.0


def read_handshake(sock: socket.socket, limit: int = 65536) -> bytes:
    """Read and check the server's 101 (blocking); return the bytes that came after it."""
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(8192)
        if not chunk:
            raise ConnectionError(f"closed during the handshake after {head!r}")
        head += chunk
        if len(head) > limit:
            raise ConnectionError(f"handshake response over {limit} bytes")
    end = head.index(b"\r\n\r\n")
    problem = check_handshake_response(head[:end])
    if problem is not None:
        raise ConnectionError(f"handshake: {problem}")
    return head[end + 4 :]


def open_websocket(port: int, timeout: float = 10.0) -> socket.socket:
    """Connect and do the opening handshake by hand (blocking); a non-blocking socket back."""
    sock = socket.create_connection((HOST, port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(handshake_request(port))
        rest = read_handshake(sock)
        if rest:
            raise ConnectionError(f"unexpected bytes after the 101: {rest!r}")
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class _Echo:
    """One open WebSocket of the echo load."""

    __slots__ = ("acked", "fd", "out", "pending", "reads", "received", "sent", "sock", "totals")

    def __init__(self, sock: socket.socket, totals: Totals) -> None:
        self.sock = sock
        self.totals = totals
        self.fd = sock.fileno()
        self.received = 0  # bytes of echo stream
        self.acked = 0  # whole echoes received
        self.sent = 0  # frames sent
        self.reads = 0
        self.out = b""  # what send() could not take yet
        self.pending = bytearray()  # undecoded bytes, when every frame is decoded


def _check(payload: Payload, totals: Totals, frame: tuple[int, int, bool, bytes, int]) -> bool:
    first, opcode, masked, data, _ = frame
    problem = payload.check(first, opcode, masked, data)
    if problem is not None:
        totals.error(f"echo: {problem}")
        return False
    totals.verified += 1
    return True


def _decode_sample(payload: Payload, totals: Totals, data: bytes, offset: int) -> None:
    # Echoes all have the same size, so the stream offset says where the
    # first whole frame of this read starts.
    view = memoryview(data)
    pos = -offset % payload.response_size
    for _ in range(FRAMES_PER_SAMPLE):
        frame = parse_frame(view, pos)
        if frame is None or not _check(payload, totals, frame):
            return
        pos = frame[4]


def _decode_all(payload: Payload, totals: Totals, conn: _Echo, data: bytes) -> None:
    conn.pending += data
    pos = 0
    while True:
        frame = parse_frame(conn.pending, pos)
        if frame is None or not _check(payload, totals, frame):
            break
        pos = frame[4]
    del conn.pending[:pos]


class _Sender:
    """Non-blocking sends; what the socket cannot take waits for EPOLLOUT."""

    def __init__(self, poller: select.epoll) -> None:
        self.poller = poller

    def send(self, conn: _Echo, data: bytes) -> None:
        if conn.out:
            conn.out += data
            return
        try:
            sent = conn.sock.send(data)
        except BlockingIOError:
            sent = 0
        if sent < len(data):
            conn.out = data[sent:]
            self.poller.modify(conn.fd, EPOLLIN | EPOLLOUT)

    def flush(self, conn: _Echo) -> None:
        try:
            sent = conn.sock.send(conn.out)
        except BlockingIOError:
            return
        conn.out = conn.out[sent:]
        if not conn.out:
            self.poller.modify(conn.fd, EPOLLIN)


def close_all(socks: list[socket.socket], totals: Totals, timeout: float = 10.0) -> None:
    """Send a close frame (1000) on each socket, expect a 1000 close frame and a FIN back."""
    poller = select.epoll()
    replies: dict[int, tuple[socket.socket, bytearray]] = {}
    try:
        for sock in socks:
            sock.setblocking(True)
            sock.settimeout(timeout)
            sock.sendall(CLOSE_REQUEST)
            sock.setblocking(False)
            replies[sock.fileno()] = (sock, bytearray())
            poller.register(sock.fileno(), EPOLLIN)
        deadline = time.monotonic() + timeout
        while replies and time.monotonic() < deadline:
            for fd, _ in poller.poll(0.1):
                sock, reply = replies[fd]
                try:
                    data = sock.recv(READ_SIZE)
                except BlockingIOError:
                    continue
                except OSError as error:
                    data = b""
                    totals.error(f"closing: {error}")
                if data:
                    reply += data
                    continue
                # The server hung up: its last bytes must be a 1000 close frame.
                if not reply.endswith(CLOSE_REPLY):
                    totals.error(
                        f"close reply ends {bytes(reply[-8:])!r}, expected {CLOSE_REPLY!r}"
                    )
                poller.unregister(fd)
                del replies[fd]
        if replies:
            totals.error(f"{len(replies)} server(s) did not close within {timeout} s of a close")
    finally:
        poller.close()
        for sock in socks:
            sock.close()


def echo_load(
    port: int,
    payload: Payload,
    *,
    connections: int,
    window: int,
    warmup: float,
    duration: float,
    sample_every: int = 64,
    coalesce: float = 0.002,
    server_cpu: Callable[[], float] = _no_server_cpu,
) -> RunResult:
    """Pipelined echoes on ``connections`` WebSockets, ``window`` messages in flight on each.

    Counts echoes completed during ``duration`` seconds after ``warmup``. After
    each pass over the ready sockets the client sleeps ``coalesce`` seconds, so
    that it reads many echoes per ``recv()`` instead of waking for each one
    (interrupt moderation, as a NIC does). The window must hold far more than
    ``coalesce`` seconds of the server's work so the server never runs dry: at
    the defaults, 2,048 messages in flight are over 20 ms of work for the
    fastest server here.
    """
    return echo_load_many(
        [port],
        payload,
        connections=connections,
        window=window,
        warmup=warmup,
        duration=duration,
        sample_every=sample_every,
        coalesce=coalesce,
        server_cpus=[server_cpu],
    )[0]


def echo_load_many(
    ports: list[int],
    payload: Payload,
    *,
    connections: int,
    window: int,
    warmup: float,
    duration: float,
    sample_every: int = 64,
    coalesce: float = 0.002,
    server_cpus: list[Callable[[], float]] | None = None,
) -> list[RunResult]:
    """:func:`echo_load` on several servers at once, ``connections`` WebSockets to each.

    One loop drives them all, their connections interleaved, so every server
    sees the same load at the same moments: with the servers sharing one CPU,
    whatever slows the machine down slows them all alike (the head-to-head
    figures). Returns one result per port; the client CPU is the whole client's.
    """
    if window > len(payload.batches) - 1:
        raise ValueError(f"window {window} is larger than the payload's {len(payload.batches) - 1}")
    probes = server_cpus or [_no_server_cpu] * len(ports)
    all_totals = [Totals() for _ in ports]
    conns: list[_Echo] = []
    try:
        for _ in range(connections):
            for port, totals in zip(ports, all_totals, strict=True):
                conns.append(_Echo(open_websocket(port), totals))
    except BaseException:
        for conn in conns:
            conn.sock.close()
        raise
    by_fd = {conn.fd: conn for conn in conns}
    poller = select.epoll()
    sender = _Sender(poller)
    size = payload.response_size
    batches = payload.batches
    marks: list[tuple[list[int], float, float, list[float]]] = []

    def mark(now: float) -> None:
        counts = [totals.echoed for totals in all_totals]
        marks.append((counts, now, time.process_time(), [probe() for probe in probes]))

    live: list[_Echo] = []
    try:
        for conn in conns:
            poller.register(conn.fd, EPOLLIN)
        start = time.perf_counter()
        window_start = start + warmup
        window_end = window_start + duration
        for conn in conns:
            conn.sent = window
            sender.send(conn, batches[window])
        sending = True
        waiting = len(conns)  # connections with echoes outstanding, once sending stops
        drain_deadline = window_end + 10
        while waiting:
            now = time.perf_counter()
            if sending:
                if not marks and now >= window_start:
                    mark(now)
                elif marks and now >= window_end:
                    mark(now)
                    sending = False
                    waiting = sum(1 for conn in conns if conn.acked < conn.sent)
                    continue
            elif now > drain_deadline:
                for conn in conns:
                    if 0 <= conn.acked < conn.sent:
                        conn.totals.error("not every echo came back within 10 s")
                break
            for fd, events in poller.poll(0.05):
                conn = by_fd[fd]
                if events & EPOLLOUT and conn.out:
                    sender.flush(conn)
                if not events & (EPOLLIN | EPOLL_BROKEN):
                    continue
                try:
                    data = conn.sock.recv(READ_SIZE)
                except BlockingIOError:
                    continue
                except OSError as error:
                    data = b""
                    conn.totals.error(f"recv: {error}")
                if not data:
                    conn.totals.error("the server closed an echo connection")
                    poller.unregister(fd)
                    if not sending and conn.acked < conn.sent:
                        waiting -= 1
                    conn.sent = conn.acked = -1  # counted as done
                    continue
                offset = conn.received
                conn.received = received = offset + len(data)
                conn.reads += 1
                if sample_every == 1:
                    _decode_all(payload, conn.totals, conn, data)
                elif conn.reads % sample_every == 1:
                    _decode_sample(payload, conn.totals, data, offset)
                done = received // size
                new = done - conn.acked
                if new:
                    conn.acked = done
                    conn.totals.echoed += new
                    if sending:
                        conn.sent += new
                        sender.send(conn, batches[new])
                    elif done >= conn.sent:
                        waiting -= 1
            if coalesce and sending:
                time.sleep(coalesce)
        for conn in conns:
            if conn.sent < 0:
                conn.sock.close()
                continue
            if conn.received != conn.sent * size:
                conn.totals.error(
                    f"received {conn.received} bytes, expected {conn.sent} echoes of "
                    f"{size} = {conn.sent * size}"
                )
            if sample_every == 1 and conn.pending:
                conn.totals.error(f"{len(conn.pending)} bytes left undecoded")
            live.append(conn)
    except BaseException:
        for conn in conns:
            conn.sock.close()
        raise
    finally:
        poller.close()
    for totals in all_totals:
        close_all([conn.sock for conn in live if conn.totals is totals], totals)
    if len(marks) < 2:
        raise RuntimeError("the echo window never completed")
    (n0, t0, c0, s0), (n1, t1, c1, s1) = marks
    return [
        RunResult(
            Window(n1[i] - n0[i], t1 - t0, c1 - c0, s1[i] - s0[i]),
            totals.verified,
            tuple(totals.errors),
            totals.error_count,
            {"total_echoed": totals.echoed},
        )
        for i, totals in enumerate(all_totals)
    ]


def hold_idle(
    port: int, count: int, *, settle: float, measure: Callable[[], Any]
) -> tuple[Any, RunResult]:
    """Open ``count`` WebSockets one by one, echo one 32-byte text message on each, leave
    them idle, call ``measure()`` after ``settle`` seconds, then close them all."""
    payload = Payload("idle", OP_TEXT, text_payload(32), window=1)
    totals = Totals()
    socks: list[socket.socket] = []
    t0 = time.perf_counter()
    try:
        for _ in range(count):
            sock = open_websocket(port)
            socks.append(sock)
            sock.setblocking(True)
            sock.settimeout(10)
            sock.sendall(payload.request)
            reply = b""
            while len(reply) < payload.response_size:
                chunk = sock.recv(payload.response_size - len(reply))
                if not chunk:
                    raise ConnectionError("the server closed an idle connection")
                reply += chunk
            frame = parse_frame(reply)
            if frame is None or frame[4] != len(reply):
                totals.error(f"idle echo {reply!r} is not one frame")
            else:
                _check(payload, totals, frame)
        opened = time.perf_counter() - t0
        time.sleep(settle)
        measured = measure()
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    close_all(socks, totals)
    result = RunResult(
        Window(len(socks), opened, 0.0, 0.0),
        totals.verified,
        tuple(totals.errors),
        totals.error_count,
    )
    return measured, result


_ACCEPT_LINE = f"Sec-WebSocket-Accept: {WS_ACCEPT}".lower().encode("ascii")


def handshake_load(
    port: int,
    *,
    concurrency: int,
    warmup: float,
    duration: float,
    server_cpu: Callable[[], float] = _no_server_cpu,
) -> RunResult:
    """Full WebSocket lifecycles, ``concurrency`` at a time, for ``duration`` s after ``warmup``.

    Each slot runs: connect, send the upgrade, read the 101, send a close
    frame, read the server's close frame and its FIN, close, and again.
    Every response is checked for ``101`` and the right ``Sec-WebSocket-Accept``;
    every 16th is parsed in full.
    """
    return handshake_load_many(
        [port],
        concurrency=concurrency,
        warmup=warmup,
        duration=duration,
        server_cpus=[server_cpu],
    )[0]


def handshake_load_many(
    ports: list[int],
    *,
    concurrency: int,
    warmup: float,
    duration: float,
    server_cpus: list[Callable[[], float]] | None = None,
    full_check_every: int = 16,
    stuck_after: float = 5.0,
) -> list[RunResult]:
    """:func:`handshake_load` on several servers at once, ``concurrency`` slots for each."""
    probes = server_cpus or [_no_server_cpu] * len(ports)
    requests = [handshake_request(port) for port in ports]
    all_totals = [Totals() for _ in ports]
    poller = select.epoll()
    # fd -> [socket, state (0 connecting, 1 upgrading, 2 closing), buffer, started, server]
    conns: dict[int, list[Any]] = {}
    opened = 0
    start = time.perf_counter()
    window_start = start + warmup
    window_end = window_start + duration
    marks: list[tuple[list[int], float, float, list[float]]] = []
    stopping = False
    epollout, epollin = select.EPOLLOUT, select.EPOLLIN
    broken = select.EPOLLERR | select.EPOLLHUP

    def mark(now: float) -> None:
        counts = [totals.handshakes for totals in all_totals]
        marks.append((counts, now, time.process_time(), [probe() for probe in probes]))

    def open_one(server: int) -> None:
        nonlocal opened
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        code = sock.connect_ex((HOST, ports[server]))
        if code not in (0, errno.EINPROGRESS):
            all_totals[server].error(f"connect: {errno.errorcode.get(code, code)}")
            sock.close()
            return
        fd = sock.fileno()
        conns[fd] = [sock, 0, b"", time.perf_counter(), server]
        poller.register(fd, epollout)
        opened += 1

    def finish(fd: int, problem: str | None) -> None:
        conn = conns.pop(fd)
        poller.unregister(fd)
        conn[0].close()
        totals = all_totals[conn[4]]
        if problem is None:
            totals.handshakes += 1
        else:
            totals.error(problem)
        if not stopping:
            open_one(conn[4])

    for _ in range(concurrency):
        for server in range(len(ports)):
            open_one(server)
    next_sweep = start + 0.5
    try:
        while conns:
            now = time.perf_counter()
            if not marks and now >= window_start:
                mark(now)
            if len(marks) == 1 and now >= window_end:
                mark(now)
                stopping = True
            if now >= next_sweep:
                next_sweep = now + 0.5
                for fd in [fd for fd, c in conns.items() if now - c[3] > stuck_after]:
                    finish(fd, f"no close from the server within {stuck_after} s")
                if stopping and now > window_end + 10:
                    break
            for fd, events in poller.poll(0.05):
                conn = conns.get(fd)
                if conn is None:
                    continue
                sock = conn[0]
                if conn[1] == 0:
                    if events & broken:
                        error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        finish(fd, f"connect: {errno.errorcode.get(error, error)}")
                        continue
                    try:
                        sock.send(requests[conn[4]])
                    except OSError as error:
                        finish(fd, f"send: {error}")
                        continue
                    conn[1] = 1
                    poller.modify(fd, epollin)
                    continue
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError as error:
                    finish(fd, f"recv: {error}")
                    continue
                if conn[1] == 2:
                    if data:
                        conn[2] += data
                    elif conn[2][:4] != CLOSE_REPLY[:4]:
                        finish(fd, f"close reply {conn[2][:8]!r}, expected {CLOSE_REPLY!r}")
                    else:
                        finish(fd, None)
                    continue
                if not data:
                    finish(fd, "connection closed before the upgrade")
                    continue
                head = conn[2] + data
                end = head.find(b"\r\n\r\n")
                if end < 0:
                    conn[2] = head
                    continue
                if opened % full_check_every == 0:
                    problem = check_handshake_response(head[:end])
                elif not head.startswith(b"HTTP/1.1 101") or _ACCEPT_LINE not in head.lower():
                    problem = check_handshake_response(head[:end]) or "bad handshake response"
                else:
                    problem = None
                if problem is not None:
                    finish(fd, f"handshake: {problem}")
                    continue
                conn[1] = 2
                conn[2] = head[end + 4 :]
                sock.send(CLOSE_REQUEST)
    finally:
        for fd in list(conns):
            conns.pop(fd)[0].close()
        poller.close()
    if len(marks) < 2:
        raise RuntimeError("the handshake window never completed")
    (n0, t0, c0, s0), (n1, t1, c1, s1) = marks
    return [
        RunResult(
            Window(n1[i] - n0[i], t1 - t0, c1 - c0, s1[i] - s0[i]),
            totals.handshakes,
            tuple(totals.errors),
            totals.error_count,
        )
        for i, totals in enumerate(all_totals)
    ]
