"""The echo and handshake load client: raw non-blocking sockets on a bare ``epoll`` loop.

Why not asyncio: on the 2-core box, its per-read machinery cost the client about as
much CPU per echo as the fastest server, and ``create_connection`` about 320 µs per
handshake against about 100 µs here. Per echo this client only counts received bytes
(every echo has one known size) and sends one more prebuilt frame; every
``sample_every``-th read is decoded frame by frame (``1``: every frame, the smoke test).
"""

from __future__ import annotations

import errno
import select
import socket
import time
from collections.abc import Callable
from typing import Any

import attrs

from bench.system import HOST, CpuTimes
from bench.ws import (
    ACCEPT,
    CLOSE_REPLY,
    CLOSE_REQUEST,
    Opcode,
    Totals,
    check_101,
    client_frame,
    close_all,
    open_quiet,
    parse_frame,
    receive,
    request,
    server_frame,
)

ECHO_PATH = "/ws"
HELLO_PATH = "/hello"
HELLO_BODY = "Hello, World!"
#: Frames decoded per sampled read at most, so a sample stays cheap whatever its size.
FRAMES_PER_SAMPLE = 8
EPOLLIN, EPOLLOUT = select.EPOLLIN, select.EPOLLOUT
Probe = Callable[[], float]


class Payload:
    """One echo workload: the message, the exact echo, and ``batches[k]``, k request frames
    back to back, so one ``send()`` of any size up to the window encodes nothing."""

    def __init__(self, opcode: Opcode, data: bytes, window: int) -> None:
        self.opcode, self.data = opcode, data
        self.request = client_frame(opcode, data)
        self.response = server_frame(opcode, data)
        self.size = len(self.response)
        self.echo = (opcode, True, False, data)  # what a decoded echo must be
        self.batches = [self.request * k for k in range(window + 1)]

    @classmethod
    def text(cls, size: int, window: int) -> Payload:
        alphabet = b"spry-bench-0123456789abcdefghijklmnopqrstuvwxyz"
        return cls(Opcode.TEXT, (alphabet * (size // len(alphabet) + 1))[:size], window)

    @classmethod
    def binary(cls, size: int, window: int) -> Payload:
        return cls(Opcode.BINARY, (bytes(range(256)) * (size // 256 + 1))[:size], window)

    def verify(
        self, buf: bytes | bytearray | memoryview, pos: int, frames: int, totals: Totals
    ) -> int:
        """Decode up to ``frames`` echoes from ``buf[pos:]`` and check each; where it stopped."""
        for _ in range(frames):
            parsed = parse_frame(buf, pos)
            if parsed is None:
                break
            frame, end = parsed
            if (frame.opcode, frame.fin, frame.masked, frame.payload) != self.echo:
                totals.error(
                    f"echo: got {frame!r:.120}, expected {self.opcode.name} of {len(self.data)} B"
                )
                break
            totals.verified += 1
            pos = end
        return pos


@attrs.frozen
class Result:
    """One server's share of a run: operations in the window, the window, CPU, checks."""

    count: int
    seconds: float
    client_cpu: float
    server_cpu: float
    totals: Totals
    cpu_busy: dict[str, float] = attrs.Factory(dict)
    extra: dict[str, Any] = attrs.Factory(dict)

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0


class Window:
    """The two marks of a measured window: counts, wall clock, client CPU, each server's CPU."""

    def __init__(self, totals: list[Totals], probes: list[Probe] | None) -> None:
        self.totals, self.probes = totals, probes or [lambda: 0.0] * len(totals)
        self.marks: list[tuple[list[int], float, float, list[float], CpuTimes]] = []

    def mark(self) -> None:
        counts, cpus = [t.done for t in self.totals], CpuTimes.read()
        now = time.perf_counter()
        self.marks.append((counts, now, time.process_time(), [p() for p in self.probes], cpus))

    def results(self, what: str) -> list[Result]:
        if len(self.marks) < 2:
            raise RuntimeError(f"the {what} window never completed")
        (n0, t0, c0, s0, cpus0), (n1, t1, c1, s1, cpus1) = self.marks
        busy = cpus1.busy_since(cpus0)
        return [
            Result(n1[i] - n0[i], t1 - t0, c1 - c0, s1[i] - s0[i], t, busy, {"total": t.done})
            for i, t in enumerate(self.totals)
        ]


class _Echo:
    __slots__ = ("acked", "fd", "out", "pending", "reads", "received", "sent", "sock", "totals")

    def __init__(self, sock: socket.socket, totals: Totals) -> None:
        self.sock, self.totals, self.fd = sock, totals, sock.fileno()
        self.received = self.acked = self.sent = self.reads = 0  # bytes, echoes, frames, reads
        self.out = b""  # what send() could not take yet
        self.pending = bytearray()  # undecoded bytes, when every frame is decoded


def echo_load(
    ports: list[int],
    payload: Payload,
    *,
    connections: int,
    warmup: float,
    duration: float,
    sample_every: int = 64,
    coalesce: float = 0.002,
    probes: list[Probe] | None = None,
) -> list[Result]:
    """Pipelined echoes, ``connections`` WebSockets per server, the payload's window in flight
    on each, counted during ``duration`` s after ``warmup``; one result per port.

    Several servers are driven by one loop, their connections interleaved, so whatever slows
    the machine slows them alike (the head-to-head figures). After each pass over the ready
    sockets the client sleeps ``coalesce`` s so a ``recv()`` carries many echoes; the window
    (2,048 messages at the defaults) is more than 20 ms of work for the fastest server, so it
    never runs dry. At the end the client stops sending, waits for every outstanding echo and
    checks the byte count is exact, then closes every connection.
    """
    window = len(payload.batches) - 1
    all_totals = [Totals() for _ in ports]
    conns: list[_Echo] = []
    try:
        for _ in range(connections):
            conns += [
                _Echo(open_quiet(p, ECHO_PATH), t) for p, t in zip(ports, all_totals, strict=True)
            ]
    except BaseException:
        for conn in conns:
            conn.sock.close()
        raise
    by_fd = {conn.fd: conn for conn in conns}
    poller = select.epoll()
    size, batches = payload.size, payload.batches
    marks = Window(all_totals, probes)

    def send(conn: _Echo, data: bytes) -> None:
        if not conn.out:
            try:
                sent = conn.sock.send(data)
            except BlockingIOError:
                sent = 0
            data = data[sent:]
            if data:
                poller.modify(conn.fd, EPOLLIN | EPOLLOUT)
        conn.out += data

    try:
        for conn in conns:
            poller.register(conn.fd, EPOLLIN)
        window_start = time.perf_counter() + warmup
        window_end = window_start + duration
        for conn in conns:
            conn.sent = window
            send(conn, batches[window])
        sending = True
        waiting = len(conns)  # connections with echoes outstanding, once sending stops
        while waiting:
            now = time.perf_counter()
            if sending and not marks.marks and now >= window_start:
                marks.mark()
            elif sending and marks.marks and now >= window_end:
                marks.mark()
                sending = False
                waiting = sum(1 for conn in conns if conn.acked < conn.sent)
                continue
            elif not sending and now > window_end + 10:
                for conn in conns:
                    if 0 <= conn.acked < conn.sent:
                        conn.totals.error("not every echo came back within 10 s")
                break
            for fd, events in poller.poll(0.05):
                conn = by_fd[fd]
                if events & EPOLLOUT and conn.out:
                    try:
                        sent = conn.sock.send(conn.out)
                    except BlockingIOError:
                        sent = 0
                    conn.out = conn.out[sent:]
                    if not conn.out:
                        poller.modify(fd, EPOLLIN)
                if not events & ~EPOLLOUT:
                    continue
                if (data := receive(conn.sock, conn.totals.error)) is None:
                    continue
                if not data:
                    conn.totals.error("the server closed an echo connection")
                    poller.unregister(fd)
                    if not sending and conn.acked < conn.sent:
                        waiting -= 1
                    conn.sent = conn.acked = -1  # done
                    continue
                offset = conn.received
                conn.received += len(data)
                conn.reads += 1
                if sample_every == 1:
                    conn.pending += data
                    del conn.pending[: payload.verify(conn.pending, 0, 1 << 30, conn.totals)]
                elif conn.reads % sample_every == 1:
                    # Echoes have one size: the stream offset says where a whole one starts.
                    payload.verify(memoryview(data), -offset % size, FRAMES_PER_SAMPLE, conn.totals)
                done = conn.received // size
                new = done - conn.acked
                if new:
                    conn.acked = done
                    conn.totals.done += new
                    if sending:
                        conn.sent += new
                        send(conn, batches[new])
                    elif done >= conn.sent:
                        waiting -= 1
            if coalesce and sending:
                time.sleep(coalesce)
        live = []
        for conn in conns:
            if conn.sent < 0:
                conn.sock.close()
                continue
            if conn.received != conn.sent * size:
                conn.totals.error(f"received {conn.received} bytes, expected {conn.sent} × {size}")
            if conn.pending:
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
    return marks.results("echo")


def hold_idle(
    port: int, count: int, settle: float, measure: Callable[[], int], *, first: int = 0
) -> tuple[list[int], Result]:
    """Open ``count`` WebSockets one by one, echo one 32-byte text message on each, leave
    them idle; ``measure()`` after ``settle`` seconds, then close them all. With ``first``,
    ``measure()`` also once that many are open (after ``settle`` too): the readings come
    back in that order."""
    payload = Payload.text(32, 1)
    totals = Totals()
    socks: list[socket.socket] = []
    readings: list[int] = []
    t0 = time.perf_counter()
    try:
        for n in range(count):
            if first and n == first:
                time.sleep(settle)
                readings.append(measure())
            sock = open_quiet(port, ECHO_PATH)
            socks.append(sock)
            sock.setblocking(True)
            sock.settimeout(10)
            sock.sendall(payload.request)
            reply = b""
            while len(reply) < payload.size:
                chunk = sock.recv(payload.size - len(reply))
                if not chunk:
                    raise ConnectionError("the server closed an idle connection")
                reply += chunk
            if payload.verify(reply, 0, 1, totals) != len(reply):
                totals.error(f"idle echo {reply!r} is not the one frame expected")
        opened = time.perf_counter() - t0
        time.sleep(settle)
        readings.append(measure())
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    close_all(socks, totals)
    return readings, Result(len(socks), opened, 0.0, 0.0, totals)


def handshake_load(
    ports: list[int],
    *,
    concurrency: int,
    warmup: float,
    duration: float,
    probes: list[Probe] | None = None,
    full_check_every: int = 16,
    stuck_after: float = 5.0,
) -> list[Result]:
    """Whole WebSocket lifecycles, ``concurrency`` slots per server, counted during
    ``duration`` s after ``warmup``: connect, upgrade, read the 101, send a close frame, read
    the server's close frame and FIN, and again. Each 101 is checked for the status and the
    ``Sec-WebSocket-Accept``; every ``full_check_every``-th is parsed in full."""
    requests = [request(port, ECHO_PATH) for port in ports]
    accept_line = f"sec-websocket-accept: {ACCEPT}".lower().encode()
    all_totals = [Totals() for _ in ports]
    marks = Window(all_totals, probes)
    poller = select.epoll()
    # fd -> [socket, state (0 connecting, 1 upgrading, 2 closing), buffer, started, server]
    conns: dict[int, list[Any]] = {}
    opened = 0
    stopping = False

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
        conns[sock.fileno()] = [sock, 0, b"", time.perf_counter(), server]
        poller.register(sock.fileno(), EPOLLOUT)
        opened += 1

    def finish(fd: int, problem: str | None) -> None:
        sock, _, _, _, server = conns.pop(fd)
        poller.unregister(fd)
        sock.close()
        if problem is None:
            all_totals[server].done += 1
        else:
            all_totals[server].error(problem)
        if not stopping:
            open_one(server)

    for _ in range(concurrency):
        for server in range(len(ports)):
            open_one(server)
    window_start = time.perf_counter() + warmup
    window_end = window_start + duration
    next_sweep = window_start - warmup + 0.5
    try:
        while conns:
            now = time.perf_counter()
            if not marks.marks and now >= window_start:
                marks.mark()
            if len(marks.marks) == 1 and now >= window_end:
                marks.mark()
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
                    if events & (select.EPOLLERR | select.EPOLLHUP):
                        error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        finish(fd, f"connect: {errno.errorcode.get(error, error)}")
                        continue
                    try:
                        sock.send(requests[conn[4]])
                    except OSError as error:
                        finish(fd, f"send: {error}")
                        continue
                    conn[1] = 1
                    poller.modify(fd, EPOLLIN)
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
                problem = None
                if opened % full_check_every == 0:
                    problem = check_101(head[:end])
                elif not head.startswith(b"HTTP/1.1 101") or accept_line not in head.lower():
                    problem = check_101(head[:end]) or "bad handshake response"
                if problem is not None:
                    finish(fd, f"handshake: {problem}")
                    continue
                conn[1], conn[2] = 2, head[end + 4 :]
                sock.send(CLOSE_REQUEST)
    finally:
        for fd in list(conns):
            conns.pop(fd)[0].close()
        poller.close()
    return marks.results("handshake")
