"""The fan-out client: thousands of subscriber WebSockets on one bare ``epoll`` loop.

Same approach as the echo client (``bench/client.py``): raw non-blocking
sockets, handshakes written by hand, nothing but byte counting on the hot
path. A burst is timed from the moment the trigger command is written to the
control WebSocket until the last subscriber has received its last byte; the
expected frames are known exactly (``bench/fanout/wire.py``), so raw aiohttp's
and aiohttp_spry's deliveries are counted by bytes. Socket.IO sockets are
walked frame by frame instead, because the server's Engine.IO pings (``2``,
answered with ``3``) arrive between the messages.

Correctness: after every burst each subscriber of the target set must hold
exactly the burst's bytes (or frames), no other subscriber may have received
anything, and on a sample of subscribers (every ``sample_every``-th, and the
last) every frame is decoded and compared, in order, with the message sent.
The latency run decodes every frame on every subscriber and checks each
sequence number.
"""

from __future__ import annotations

import json
import select
import socket
import struct
import time
from array import array
from collections.abc import Callable
from typing import Any

import attrs

from bench.client import HOST, Totals, close_all, read_handshake
from bench.frames import OP_TEXT, handshake_request, parse_frame
from bench.system import CpuTimes

from .wire import (
    MESSAGE_SIZE,
    SIO_CONNECT,
    SIO_PONG,
    burst_messages,
    command,
    latency_checks,
    parse_latency_message,
    sio_frame,
    ws_frame,
)

READ_SIZE = 1 << 18
#: With SO_RCVLOWAT, the frames a subscriber's last read of a burst is left with.
LAST_READ_FRAMES = 8
#: Linux's SO_TIMESTAMPNS (= SCM_TIMESTAMPNS): the kernel's receive time of a segment,
#: a struct timespec of CLOCK_REALTIME, as ancillary data of recvmsg().
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TIMESPEC = struct.Struct("qq")
_ANCILLARY_SIZE = socket.CMSG_SPACE(_TIMESPEC.size)
EPOLLIN = select.EPOLLIN
WS = "ws"
SIO = "sio"


def _read_frame(sock: socket.socket, buf: bytes) -> tuple[bytes, bytes]:
    """Blocking: the next frame's payload (must be an unmasked text frame), and what follows."""
    while True:
        frame = parse_frame(buf)
        if frame is not None:
            first, _, masked, payload, end = frame
            if first != 0x80 | OP_TEXT or masked:
                raise ConnectionError(f"expected an unmasked text frame, got {buf[:16]!r}")
            return payload, buf[end:]
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed while a frame was expected")
        buf += chunk


def open_ws(port: int, path: str, timeout: float = 10.0) -> tuple[socket.socket, bytes]:
    """Connect and upgrade (blocking); the socket and any bytes the server sent after the 101."""
    sock = socket.create_connection((HOST, port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(handshake_request(port, path))
        return sock, read_handshake(sock)
    except BaseException:
        sock.close()
        raise


def open_sio(port: int, path: str, timeout: float = 10.0) -> socket.socket:
    """Engine.IO v4 straight over WebSocket: read the open packet ``0{...}``, connect to the
    ``/`` namespace with ``40`` and wait for the server's ``40{...}`` (python-socketio sends
    it once the ``connect`` handler, which joins the room, has returned)."""
    sock, rest = open_ws(port, path, timeout)
    try:
        payload, rest = _read_frame(sock, rest)
        if not payload.startswith(b"0{"):
            raise ConnectionError(f"expected the Engine.IO open packet, got {payload[:40]!r}")
        opened = json.loads(payload[1:])
        if "sid" not in opened or "pingInterval" not in opened:
            raise ConnectionError(f"odd Engine.IO open packet {payload!r}")
        sock.sendall(SIO_CONNECT)
        payload, rest = _read_frame(sock, rest)
        if not payload.startswith(b"40{"):
            raise ConnectionError(f"expected the Socket.IO CONNECT answer, got {payload[:40]!r}")
        if rest:
            raise ConnectionError(f"unexpected bytes after the CONNECT answer: {rest[:40]!r}")
    except BaseException:
        sock.close()
        raise
    return sock


class Control:
    """The blocking control WebSocket to one server: JSON commands, JSON answers."""

    def __init__(self, port: int, path: str) -> None:
        self.sock, self.rest = open_ws(port, path)
        if self.rest:
            raise ConnectionError(f"unexpected bytes after the control 101: {self.rest[:40]!r}")

    def send(self, op: str, **fields: Any) -> None:
        self.sock.sendall(command(op, **fields))

    def reply(self, timeout: float = 60.0) -> dict[str, Any]:
        self.sock.settimeout(timeout)
        payload, self.rest = _read_frame(self.sock, self.rest)
        answer: dict[str, Any] = json.loads(payload)
        if "error" in answer:
            raise RuntimeError(f"the server failed a command: {answer['error']}")
        return answer

    def ask(self, op: str, timeout: float = 60.0, **fields: Any) -> dict[str, Any]:
        self.send(op, **fields)
        return self.reply(timeout)

    def close(self) -> None:
        self.sock.close()


class Sub:
    """One subscriber WebSocket."""

    __slots__ = (
        "buf",
        "fd",
        "frames",
        "group",
        "next_seq",
        "pending",
        "received",
        "sampled",
        "sock",
    )

    def __init__(self, sock: socket.socket, group: Group, sampled: bool) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.group = group
        self.sampled = sampled
        self.received = 0  # bytes of the current burst (WebSocket sets)
        self.frames = 0  # data frames of the current burst (Socket.IO)
        self.buf = bytearray()  # a sampled subscriber's burst, or the latency run's frames
        self.pending = bytearray()  # Socket.IO: the partial frame at the end of the last read
        self.next_seq = 0  # the latency run's next expected sequence number


@attrs.define
class Group:
    """The N subscribers of one contender (one server route)."""

    name: str
    kind: str  # WS or SIO
    port: int
    path: str
    subs: list[Sub] = attrs.Factory(list)
    #: Bytes (or frames) received outside this set's own bursts: must stay 0.
    stray: int = 0


@attrs.frozen
class BurstResult:
    group: str
    subscribers: int
    messages: int
    deliveries: int  # subscriber-messages received, counted by the client
    seconds: float  # trigger written -> last byte of the last subscriber
    client_cpu: float
    server_cpu: float
    cpu_busy: dict[str, float]
    verified: int  # frames decoded and compared on the sampled subscribers
    reply: dict[str, Any]
    errors: tuple[str, ...]
    reads: int = 0  # recv() calls on the target set's sockets

    @property
    def rate(self) -> float:
        return self.deliveries / self.seconds if self.seconds > 0 else 0.0

    @property
    def client_share(self) -> float:
        return self.client_cpu / self.seconds if self.seconds > 0 else 0.0

    @property
    def server_share(self) -> float:
        return self.server_cpu / self.seconds if self.seconds > 0 else 0.0

    def other(self) -> float:
        """Cores busy during the burst besides the target server and the client."""
        if not self.cpu_busy:
            return 0.0
        return sum(self.cpu_busy.values()) - self.client_share - self.server_share


@attrs.frozen
class LatencyResult:
    #: group name -> per-delivery latencies in ns (after the warm-up messages): kernel
    #: receive timestamp on the client socket - publish time
    latencies: dict[str, array]  # type: ignore[type-arg]
    #: the same, taken at the client's clock after the recv() instead
    observed: dict[str, array]  # type: ignore[type-arg]
    #: group name -> per message, the first and the last delivery's latency in ns
    first: dict[str, list[int]]
    last: dict[str, list[int]]
    messages: int
    seconds: float
    client_cpu: float
    verified: int
    reply: dict[str, Any]
    errors: tuple[str, ...]
    polls: int = 0
    idle_polls: int = 0  # polls that found nothing ready (busy polling)
    shared_reads: int = 0  # deliveries read together with another (one timestamp for both)


class FanoutClient:
    """Every subscriber of every set, on one epoll loop; Socket.IO pings answered."""

    def __init__(self) -> None:
        self.poller = select.epoll()
        self.by_fd: dict[int, Sub] = {}
        self.groups: list[Group] = []
        self.totals = Totals()  # errors outside a burst: opening, pings, closing
        self.pings = 0

    # -- connections ----------------------------------------------------------------

    def open_group(
        self, name: str, kind: str, port: int, path: str, count: int, sample_every: int
    ) -> Group:
        group = Group(name, kind, port, path)
        self.groups.append(group)
        for i in range(count):
            if kind == SIO:
                sock = open_sio(port, path)
            else:
                sock, rest = open_ws(port, path)
                if rest:
                    sock.close()
                    raise ConnectionError(f"unexpected bytes after the 101: {rest[:40]!r}")
            sock.setblocking(False)
            sampled = i % sample_every == 0 or i == count - 1
            sub = Sub(sock, group, sampled)
            group.subs.append(sub)
            self.by_fd[sub.fd] = sub
            self.poller.register(sub.fd, EPOLLIN)
            if kind == SIO and i % 256 == 255:
                self.service(0)  # answer the first sockets' pings while opening the rest
        return group

    def close(self) -> None:
        """A 1000 close frame on every subscriber; each must answer with one and a FIN."""
        for group in self.groups:
            socks = []
            for sub in group.subs:
                if sub.fd in self.by_fd:  # not lost (that was reported already)
                    self.poller.unregister(sub.fd)
                    del self.by_fd[sub.fd]
                    socks.append(sub.sock)
                else:
                    sub.sock.close()
            close_all(socks, self.totals, timeout=30.0)
        self.groups.clear()
        self.poller.close()

    # -- reading ----------------------------------------------------------------------

    def _lost(self, sub: Sub, why: str) -> None:
        self.totals.error(f"{sub.group.name} subscriber: {why}")
        self.poller.unregister(sub.fd)
        del self.by_fd[sub.fd]

    def _sio_read(self, sub: Sub, data: bytes, target: Group | None) -> None:
        """Walk the Socket.IO frames: answer pings, count the burst's data frames."""
        buf = sub.pending
        buf += data
        pos = 0
        end = len(buf)
        mine = sub.group is target
        keep = mine and sub.sampled
        while end - pos >= 2:
            length = buf[pos + 1]
            if length >= 126:  # not one of ours: decode it properly to report it
                frame = parse_frame(buf, pos)
                if frame is None:
                    break
                stop = frame[4]
            else:
                stop = pos + 2 + length
                if stop > end:
                    break
            if length == 1 and buf[pos + 2] == 0x32 and buf[pos] == 0x81:  # "2": ping
                try:
                    sub.sock.send(SIO_PONG)
                    self.pings += 1
                except OSError as error:
                    self.totals.error(f"answering a ping: {error}")
            elif mine:
                sub.frames += 1
                sub.received += stop - pos
                if keep:
                    sub.buf += buf[pos:stop]
            else:
                sub.group.stray += stop - pos
            pos = stop
        del buf[:pos]

    def _read_other(self, sub: Sub, target: Group | None) -> None:
        try:
            data = sub.sock.recv(READ_SIZE)
        except BlockingIOError:
            return
        except OSError as error:
            self._lost(sub, f"recv: {error}")
            return
        if not data:
            self._lost(sub, "the server closed the connection")
        elif sub.group.kind == SIO:
            self._sio_read(sub, data, target)
        else:
            sub.group.stray += len(data)

    def service(self, seconds: float) -> None:
        """Read every socket for ``seconds`` (at least one pass): answer Socket.IO pings,
        count anything else that arrives as stray."""
        deadline = time.perf_counter() + seconds
        while True:
            for fd, _ in self.poller.poll(0 if seconds <= 0 else 0.01):
                sub = self.by_fd.get(fd)
                if sub is not None:
                    self._read_other(sub, None)
            if time.perf_counter() >= deadline:
                return

    # -- the fan-out burst --------------------------------------------------------------

    def burst(
        self,
        group: Group,
        control: Control,
        burst_id: int,
        k: int,
        server_cpu: Callable[[], float],
        *,
        lowat: bool = True,
        coalesce: float = 0.025,
        tail_coalesce: float = 0.001,
        timeout: float = 120.0,
    ) -> BurstResult:
        """Trigger burst ``burst_id`` of ``k`` messages on ``group`` and time it to the last
        delivered byte.

        With ``lowat`` (the default), each target socket's ``SO_RCVLOWAT`` is set before the
        trigger to the burst's size less its last few frames (:data:`LAST_READ_FRAMES`, at
        most half), and after that read to what is missing, so the kernel reports a socket
        readable (and wakes the client) twice per burst, the second time when its last byte
        has arrived: two ``recv()`` per subscriber per burst however many messages, and the
        moment a subscriber completes is seen as it happens. (A ``recv()`` costs this client
        about 20 µs of CPU, more than the fastest server spends per delivery, so reading
        every frame as it comes would make the client the bottleneck.)

        Without ``lowat``: between passes over the ready sockets the client sleeps
        ``coalesce`` seconds so each ``recv()`` carries several frames, and only
        ``tail_coalesce`` once all but the last two messages have arrived everywhere.
        """
        messages = burst_messages(burst_id, k)
        frame_of = sio_frame if group.kind == SIO else ws_frame
        expected = [frame_of(msg) for msg in messages]
        size = len(expected[0])
        if any(len(frame) != size for frame in expected):
            raise ValueError("the burst's frames must all have one size")
        expect = k * size
        # The first mark leaves the last few frames for a second read: one read of the
        # whole burst at the very end would cost the client more per subscriber (it walks
        # every segment queued) than the server spends on its last delivery, and the
        # client would finish late.
        first_mark = expect - min(k // 2, LAST_READ_FRAMES) * size
        for sub in group.subs:
            sub.received = 0
            sub.frames = 0
            sub.buf = bytearray()
            if lowat:
                sub.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, first_mark)
        stray_before = {g.name: g.stray for g in self.groups}
        subs = len(group.subs)
        remaining = subs
        by_fd = self.by_fd
        poll = self.poller.poll
        ws = group.kind == WS
        errors: list[str] = []
        cpu_before = CpuTimes.read()
        client0 = time.process_time()
        server0 = server_cpu()
        t0 = time.perf_counter()
        control.send("burst", set=group.name, id=burst_id, k=k)
        deadline = t0 + timeout
        t_last = 0.0
        reads = 0
        got = 0  # bytes read from the target set
        tail = max(0, (k - 2) * size * subs)  # from here on, poll often
        setmark = socket.SOL_SOCKET, socket.SO_RCVLOWAT
        while remaining:
            for fd, _ in poll(0.05):
                sub = by_fd.get(fd)
                if sub is None:
                    continue
                if sub.group is not group:
                    self._read_other(sub, group)
                    continue
                try:
                    data = sub.sock.recv(READ_SIZE)
                except BlockingIOError:
                    continue
                except OSError as error:
                    data = b""
                    errors.append(f"recv: {error}")
                reads += 1
                got += len(data)
                if not data:
                    self._lost(sub, "closed during a burst")
                    remaining -= 1
                    continue
                if ws:
                    before = sub.received
                    sub.received = now = before + len(data)
                    if sub.sampled:
                        sub.buf += data
                    if now >= expect > before:
                        remaining -= 1
                        if not remaining:
                            t_last = time.perf_counter()
                    elif lowat and now < expect:
                        sub.sock.setsockopt(*setmark, expect - now)
                else:
                    before = sub.frames
                    self._sio_read(sub, data, group)
                    if sub.frames >= k > before:
                        remaining -= 1
                        if not remaining:
                            t_last = time.perf_counter()
                    elif lowat and sub.frames < k:
                        missing = (k - sub.frames) * size - len(sub.pending)
                        sub.sock.setsockopt(*setmark, max(1, missing))
            if remaining and time.perf_counter() > deadline:
                errors.append(f"{remaining} of {subs} subscribers incomplete after {timeout} s")
                break
            if remaining and not lowat:
                time.sleep(coalesce if got < tail else tail_coalesce)
        t1 = t_last or time.perf_counter()
        client1 = time.process_time()
        server1 = server_cpu()
        busy = CpuTimes.read().busy_since(cpu_before)
        if lowat:
            for sub in group.subs:
                if sub.fd in by_fd:
                    sub.sock.setsockopt(*setmark, 1)
        reply = control.reply()
        # Anything late or extra shows up now: must be nothing.
        self.service(0.02)
        deliveries, verified = self._check_burst(group, k, size, expected, errors)
        for g in self.groups:
            if g.stray != stray_before[g.name]:
                errors.append(
                    f"{g.stray - stray_before[g.name]} unexpected bytes on {g.name} "
                    f"subscribers during a {group.name} burst"
                )
        if reply.get("delivered") != subs * k:
            errors.append(f"the server says it delivered {reply.get('delivered')}, not {subs * k}")
        return BurstResult(
            group.name,
            subs,
            k,
            deliveries,
            t1 - t0,
            client1 - client0,
            server1 - server0,
            busy,
            verified,
            reply,
            tuple(errors),
            reads,
        )

    def _check_burst(
        self, group: Group, k: int, size: int, expected: list[bytes], errors: list[str]
    ) -> tuple[int, int]:
        """Exact counts on every subscriber; every frame of the sampled ones decoded."""
        deliveries = 0
        wrong = 0
        verified = 0
        payloads = [frame[2:] for frame in expected]  # all shorter than 126 bytes
        for sub in group.subs:
            if sub.fd not in self.by_fd:
                wrong += 1
                continue
            if group.kind == WS:
                got = sub.received // size
                exact = sub.received == k * size
            else:
                got = sub.frames
                exact = got == k and sub.received == k * size and not sub.pending
            deliveries += min(got, k)
            if not exact:
                wrong += 1
                if wrong <= 3:
                    errors.append(
                        f"{group.name} subscriber got {sub.received} bytes / {sub.frames} "
                        f"frames, expected {k} messages of {size} bytes"
                    )
            if sub.sampled:
                verified += self._decode(group.name, sub.buf, payloads, errors)
                sub.buf = bytearray()
        if wrong:
            errors.append(f"{wrong} of {len(group.subs)} {group.name} subscribers inexact")
        return deliveries, verified

    @staticmethod
    def _decode(name: str, buf: bytearray, payloads: list[bytes], errors: list[str]) -> int:
        pos = 0
        for i, payload in enumerate(payloads):
            frame = parse_frame(buf, pos)
            if frame is None:
                errors.append(f"{name}: sampled subscriber has {i} frames, not {len(payloads)}")
                return i
            first, _, masked, data, pos = frame
            if first != 0x80 | OP_TEXT or masked or data != payload:
                errors.append(f"{name}: frame {i} is {bytes(buf[:16])!r}..., not {payload!r}")
                return i
        if pos != len(buf):
            errors.append(f"{name}: {len(buf) - pos} bytes after the last expected frame")
        return len(payloads)

    # -- the latency run ------------------------------------------------------------------

    def latency(
        self,
        groups: list[Group],
        control: Control,
        run: int,
        count: int,
        rate: float,
        warmup: int,
        timeout: float = 60.0,
        busy_poll: bool = True,
    ) -> LatencyResult:
        """Stream ``count`` timestamped messages at ``rate``/s from ``control``'s server; every
        frame on every subscriber of ``groups`` decoded.

        Two latencies per delivery, both against the publisher's ``time.time_ns()``:
        *arrival*, the kernel's receive timestamp of the frame's segment on the client
        socket (``SO_TIMESTAMPNS``, CLOCK_REALTIME, taken when the segment is queued to
        the socket, so the client's own speed does not enter it), and *observed*, the
        client's clock just after the ``recv`` that returned it. With ``busy_poll`` the
        client never sleeps in ``epoll_wait``, so no delivery has to wake it.
        """
        frame_size = 2 + MESSAGE_SIZE
        header = bytes((0x80 | OP_TEXT, MESSAGE_SIZE))
        latencies = {g.name: array("q") for g in groups}
        observed = {g.name: array("q") for g in groups}
        first = {g.name: [1 << 62] * count for g in groups}
        last = {g.name: [0] * count for g in groups}
        errors: list[str] = []
        members = set()
        for g in groups:
            for sub in g.subs:
                sub.buf = bytearray()
                sub.next_seq = 0
                sub.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                members.add(sub.fd)
        remaining = len(members)
        verified = 0
        shared_reads = 0  # deliveries that shared a recv() (and its timestamp) with another
        unstamped = 0
        by_fd = self.by_fd
        unpack = _TIMESPEC.unpack_from
        client0 = time.process_time()
        t0 = time.perf_counter()
        control.send("stream", run=run, count=count, rate=rate)
        deadline = t0 + count / rate + timeout
        wait = 0.0 if busy_poll else 0.05
        idle_polls = polls = 0
        while remaining and time.perf_counter() < deadline:
            events = self.poller.poll(wait)
            polls += 1
            if not events:
                idle_polls += 1
            for fd, _ in events:
                sub = by_fd.get(fd)
                if sub is None:
                    continue
                if fd not in members:
                    self._read_other(sub, None)
                    continue
                try:
                    data, ancillary, _, _ = sub.sock.recvmsg(READ_SIZE, _ANCILLARY_SIZE)
                except BlockingIOError:
                    continue
                except OSError as error:
                    data = b""
                    ancillary = []
                    errors.append(f"recv: {error}")
                now = time.time_ns()
                if not data:
                    self._lost(sub, "closed during the latency run")
                    members.discard(fd)
                    remaining -= 1
                    continue
                arrived = now
                for level, kind, value in ancillary:
                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                        seconds, nanoseconds = unpack(value)
                        arrived = seconds * 1_000_000_000 + nanoseconds
                        break
                else:
                    unstamped += 1
                buf = sub.buf
                buf += data
                if len(buf) > frame_size:
                    shared_reads += len(buf) // frame_size
                pos = 0
                name = sub.group.name
                lat = latencies[name]
                seen = observed[name]
                firsts = first[name]
                lasts = last[name]
                while len(buf) - pos >= frame_size:
                    stop = pos + frame_size
                    payload = bytes(buf[pos + 2 : stop])
                    try:
                        if buf[pos : pos + 2] != header or not latency_checks(payload):
                            raise ValueError(f"bad frame {bytes(buf[pos:stop])!r}")
                        got_run, seq, published = parse_latency_message(payload)
                        if got_run != run or seq != sub.next_seq:
                            raise ValueError(
                                f"message {got_run}/{seq}, expected {run}/{sub.next_seq}"
                            )
                    except ValueError as error:
                        errors.append(f"{name}: {error}")
                        self._lost(sub, "undecodable data")
                        members.discard(fd)
                        remaining -= 1
                        break
                    pos = stop
                    verified += 1
                    sub.next_seq = seq + 1
                    delay = arrived - published
                    if seq >= warmup:
                        lat.append(delay)
                        seen.append(now - published)
                    if delay < firsts[seq]:
                        firsts[seq] = delay
                    if delay > lasts[seq]:
                        lasts[seq] = delay
                    if seq + 1 == count:
                        remaining -= 1
                del buf[:pos]
        seconds = time.perf_counter() - t0
        client_cpu = time.process_time() - client0
        if remaining:
            errors.append(f"{remaining} subscribers did not get all {count} messages")
        reply = control.reply(timeout)
        self.service(0.05)
        for g in groups:
            for sub in g.subs:
                if sub.fd in by_fd and (sub.next_seq != count or sub.buf):
                    errors.append(f"{g.name} subscriber stopped at {sub.next_seq} of {count}")
                    break
        if unstamped:
            errors.append(f"{unstamped} reads without a kernel receive timestamp")
        return LatencyResult(
            {name: values for name, values in latencies.items()},
            {name: values for name, values in observed.items()},
            {name: values[warmup:] for name, values in first.items()},
            {name: values[warmup:] for name, values in last.items()},
            count,
            seconds,
            client_cpu,
            verified,
            reply,
            tuple(errors),
            polls,
            idle_polls,
            shared_reads,
        )
