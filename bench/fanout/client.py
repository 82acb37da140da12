"""The fan-out client: every subscriber WebSocket (3N) on one bare ``epoll`` loop.

As in the echo client: raw non-blocking sockets, handshakes by hand, only byte counting
on the hot path. raw aiohttp's and aiohttp_spry's deliveries are counted by bytes (every
frame has one known size); Socket.IO sockets are walked frame by frame, because the
server's Engine.IO pings (``2``, answered ``3``) arrive between the messages. After each
burst every subscriber of the target set must hold exactly the burst, no other may have
received anything, and on a sample of subscribers every frame is decoded and compared.
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

from bench.fanout.messages import MESSAGE_SIZE, burst_messages, parse_latency_message, sio_packet
from bench.servers.common import CONTROL_PATH
from bench.system import CpuTimes
from bench.ws import (
    READ_SIZE,
    Opcode,
    Totals,
    client_frame,
    close_all,
    open_quiet,
    open_ws,
    parse_frame,
    read_frame,
    receive,
    server_frame,
)

#: With SO_RCVLOWAT, the frames left for a subscriber's second (last) read of a burst.
LAST_READ_FRAMES = 8
#: Linux's SO_TIMESTAMPNS: the kernel's receive time of a segment (CLOCK_REALTIME).
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TIMESPEC = struct.Struct("qq")
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size)
SIO_CONNECT = client_frame(Opcode.TEXT, b"40")  # Socket.IO CONNECT to the "/" namespace
SIO_PONG = client_frame(Opcode.TEXT, b"3")
WS, SIO = "ws", "sio"


def open_sio(port: int, path: str) -> socket.socket:
    """Engine.IO v4 straight over WebSocket: the open packet ``0{...}``, then ``40`` and the
    server's ``40{...}`` (sent once the ``connect`` handler, which joins the room, returned)."""
    sock, rest = open_ws(port, path)
    try:
        payload, rest = read_frame(sock, rest)
        if not payload.startswith(b"0{") or "pingInterval" not in json.loads(payload[1:]):
            raise ConnectionError(f"expected the Engine.IO open packet, got {payload[:40]!r}")
        sock.sendall(SIO_CONNECT)
        payload, rest = read_frame(sock, rest)
        if not payload.startswith(b"40{") or rest:
            raise ConnectionError(f"expected the Socket.IO CONNECT answer, got {payload[:40]!r}")
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class Control:
    """The blocking control WebSocket to one server: JSON commands, JSON answers."""

    def __init__(self, port: int) -> None:
        self.sock, self.rest = open_ws(port, CONTROL_PATH)

    def send(self, op: str, **fields: Any) -> None:
        self.sock.sendall(client_frame(Opcode.TEXT, json.dumps({"op": op, **fields}).encode()))

    def reply(self, timeout: float = 60.0) -> dict[str, Any]:
        self.sock.settimeout(timeout)
        payload, self.rest = read_frame(self.sock, self.rest)
        answer: dict[str, Any] = json.loads(payload)
        if "error" in answer:
            raise RuntimeError(f"the server failed a command: {answer['error']}")
        return answer

    def ask(self, op: str, **fields: Any) -> dict[str, Any]:
        self.send(op, **fields)
        return self.reply()


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
        self.sock, self.fd, self.group, self.sampled = sock, sock.fileno(), group, sampled
        self.received = 0  # bytes of the current burst
        self.frames = 0  # data frames of the current burst (Socket.IO)
        self.buf = bytearray()  # a sampled subscriber's burst, or the latency run's frames
        self.pending = bytearray()  # Socket.IO: the partial frame at the end of the last read
        self.next_seq = 0  # the latency run's next expected sequence number


@attrs.define
class Group:
    """The N subscribers of one contender (one server route)."""

    name: str
    kind: str  # WS or SIO
    subs: list[Sub] = attrs.Factory(list)
    stray: int = 0  # bytes (or frames) received outside this set's own bursts: must stay 0


@attrs.frozen
class Latencies:
    """Per group: each delivery's latency in ns after the warm-up (kernel receive timestamp
    minus publish time), the same at the client's clock after ``recv()`` (``observed``), and
    per message the first and last delivery's."""

    arrival: dict[str, array[int]]
    observed: dict[str, array[int]]
    first: dict[str, list[int]]
    last: dict[str, list[int]]
    seconds: float
    client_cpu: float
    verified: int
    reply: dict[str, Any]
    errors: tuple[str, ...]
    polls: int
    idle_polls: int  # polls that found nothing ready (busy polling)
    shared_reads: int  # deliveries read together with another (one timestamp for both)


class FanoutClient:
    """Every subscriber of every set on one epoll loop; Socket.IO pings answered."""

    def __init__(self) -> None:
        self.poller = select.epoll()
        self.by_fd: dict[int, Sub] = {}
        self.groups: list[Group] = []
        self.totals = Totals()  # errors outside a burst: opening, pings, closing
        self.pings = 0

    def open_group(
        self, name: str, kind: str, port: int, path: str, count: int, every: int
    ) -> Group:
        group = Group(name, kind)
        self.groups.append(group)
        for i in range(count):
            sock = open_sio(port, path) if kind == SIO else open_quiet(port, path)
            sub = Sub(sock, group, sampled=i % every == 0 or i == count - 1)
            group.subs.append(sub)
            self.by_fd[sub.fd] = sub
            self.poller.register(sub.fd, select.EPOLLIN)
            if kind == SIO and i % 256 == 255:
                self.service(0)  # answer the first sockets' pings while opening the rest
        return group

    def close(self) -> None:
        """A 1000 close frame on every subscriber; each must answer with one and a FIN."""
        for group in self.groups:
            socks = []
            for sub in group.subs:
                if self.by_fd.pop(sub.fd, None) is not None:  # else lost, and reported
                    self.poller.unregister(sub.fd)
                    socks.append(sub.sock)
                else:
                    sub.sock.close()
            close_all(socks, self.totals)
        self.poller.close()

    def _lost(self, sub: Sub, why: str) -> None:
        self.totals.error(f"{sub.group.name} subscriber: {why}")
        self.poller.unregister(sub.fd)
        del self.by_fd[sub.fd]

    def _sio_read(self, sub: Sub, data: bytes, target: Group | None) -> None:
        """Walk the Socket.IO frames: answer pings, count the target burst's data frames."""
        buf = sub.pending
        buf += data
        pos, end = 0, len(buf)
        mine = sub.group is target
        while end - pos >= 2:
            length = buf[pos + 1]
            if length >= 126:  # not one of ours: decode it properly to report it
                parsed = parse_frame(buf, pos)
                if parsed is None:
                    break
                stop = parsed[1]
            elif (stop := pos + 2 + length) > end:
                break
            if length == 1 and buf[pos + 2] == 0x32 and buf[pos] == 0x81:  # "2": a ping
                try:
                    sub.sock.send(SIO_PONG)
                    self.pings += 1
                except OSError as error:
                    self.totals.error(f"answering a ping: {error}")
            elif mine:
                sub.frames += 1
                sub.received += stop - pos
                if sub.sampled:
                    sub.buf += buf[pos:stop]
            else:
                sub.group.stray += stop - pos
            pos = stop
        del buf[:pos]

    def _read_other(self, sub: Sub, target: Group | None) -> None:
        data = receive(sub.sock, self.totals.error)
        if data is None:
            return
        if not data:
            self._lost(sub, "the server closed the connection")
        elif sub.group.kind == SIO:
            self._sio_read(sub, data, target)
        else:
            sub.group.stray += len(data)

    def service(self, seconds: float) -> None:
        """Read every socket for ``seconds`` (one pass at least): answer Socket.IO pings,
        count anything else that arrives as stray."""
        deadline = time.perf_counter() + seconds
        while True:
            for fd, _ in self.poller.poll(0 if seconds <= 0 else 0.01):
                if (sub := self.by_fd.get(fd)) is not None:
                    self._read_other(sub, None)
            if time.perf_counter() >= deadline:
                return

    def burst(
        self,
        group: Group,
        control: Control,
        burst_id: int,
        k: int,
        server_cpu: Callable[[], float],
        timeout: float = 120.0,
    ) -> dict[str, Any]:
        """Trigger burst ``burst_id`` of ``k`` messages on ``group``; time it to the last byte.

        Each target socket's ``SO_RCVLOWAT`` is set before the trigger to the burst's size
        less its last few frames, then to what is missing, so the kernel wakes the client
        twice per subscriber per burst, the second time when its last byte has arrived. (A
        ``recv()`` costs this client about 20 µs, more than a fast server spends per
        delivery; one read of the whole burst at the very end would walk every segment
        queued, and the client would finish late.)
        """
        packet = sio_packet if group.kind == SIO else str.encode
        expected = [server_frame(Opcode.TEXT, packet(m)) for m in burst_messages(burst_id, k)]
        size = len(expected[0])
        if any(len(frame) != size for frame in expected):
            raise ValueError("the burst's frames must all have one size")
        expect = k * size
        setmark = socket.SOL_SOCKET, socket.SO_RCVLOWAT
        for member in group.subs:
            member.received = member.frames = 0
            member.buf = bytearray()
            member.sock.setsockopt(*setmark, expect - min(k // 2, LAST_READ_FRAMES) * size)
        stray_before = {g.name: g.stray for g in self.groups}
        subs = remaining = len(group.subs)
        by_fd, poll, ws = self.by_fd, self.poller.poll, group.kind == WS
        errors: list[str] = []
        t_last = 0.0
        reads = 0
        cpu_before, client0, server0 = CpuTimes.read(), time.process_time(), server_cpu()
        t0 = time.perf_counter()
        control.send("burst", set=group.name, id=burst_id, k=k)
        while remaining:
            for fd, _ in poll(0.05):
                sub = by_fd.get(fd)
                if sub is None:
                    continue
                if sub.group is not group:
                    self._read_other(sub, group)
                    continue
                if (data := receive(sub.sock, errors.append)) is None:
                    continue
                reads += 1
                if not data:
                    self._lost(sub, "closed during a burst")
                    remaining -= 1
                    continue
                if ws:
                    before = sub.received
                    sub.received = now = before + len(data)
                    if sub.sampled:
                        sub.buf += data
                    missing, incomplete = expect - now, now < expect
                    done = now >= expect > before
                else:
                    before = sub.frames
                    self._sio_read(sub, data, group)
                    missing = (k - sub.frames) * size - len(sub.pending)
                    incomplete, done = sub.frames < k, sub.frames >= k > before
                if done:
                    remaining -= 1
                    if not remaining:
                        t_last = time.perf_counter()
                elif incomplete:
                    sub.sock.setsockopt(*setmark, max(1, missing))
            if remaining and time.perf_counter() > t0 + timeout:
                errors.append(f"{remaining} of {subs} subscribers incomplete after {timeout} s")
                break
        t1 = t_last or time.perf_counter()
        client1, server1 = time.process_time(), server_cpu()
        busy = CpuTimes.read().busy_since(cpu_before)
        for member in group.subs:
            if member.fd in by_fd:
                member.sock.setsockopt(*setmark, 1)
        reply = control.reply()
        self.service(0.02)  # anything late or extra shows up now: must be nothing
        deliveries, verified = self._check_burst(group, k, size, expected, errors)
        for g in self.groups:
            if g.stray != stray_before[g.name]:
                errors.append(
                    f"{g.stray - stray_before[g.name]} unexpected bytes on {g.name} subscribers "
                    f"during a {group.name} burst"
                )
        if reply.get("delivered") != subs * k:
            errors.append(f"the server says it delivered {reply.get('delivered')}, not {subs * k}")
        seconds = t1 - t0
        cpu = {"client_cpu": client1 - client0, "server_cpu": server1 - server0}
        return {
            "contender": group.name,
            "subscribers": subs,
            "messages": k,
            "deliveries": deliveries,  # subscriber-messages received, counted by the client
            "seconds": seconds,  # trigger written -> last byte of the last subscriber
            **cpu,
            "other": sum(busy.values()) - sum(cpu.values()) / seconds,  # cores besides those two
            "cpu_busy": busy,
            "verified": verified,  # frames decoded and compared on the sampled subscribers
            "reads": reads,  # recv() calls on the target set's sockets
            "server_loop_seconds": reply["seconds"],
            "server_loop_cpu": reply["cpu"],
            "errors": errors,
        }

    def _check_burst(
        self, group: Group, k: int, size: int, expected: list[bytes], errors: list[str]
    ) -> tuple[int, int]:
        """Exact counts on every subscriber; every frame of the sampled ones decoded."""
        deliveries = wrong = verified = 0
        payloads = [parse_frame(frame)[0].payload for frame in expected]  # type: ignore[index]
        for sub in group.subs:
            if sub.fd not in self.by_fd:  # lost, and reported
                wrong += 1
                continue
            got = sub.received // size if group.kind == WS else sub.frames
            exact = got == k and sub.received == k * size and not sub.pending
            deliveries += min(got, k)
            if not exact:
                wrong += 1
                if wrong <= 3:
                    errors.append(
                        f"{group.name} subscriber got {sub.received} bytes / {sub.frames} frames, "
                        f"expected {k} messages of {size} bytes"
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
            parsed = parse_frame(buf, pos)
            if parsed is None:
                errors.append(f"{name}: sampled subscriber has {i} frames, not {len(payloads)}")
                return i
            frame, pos = parsed
            if (frame.opcode, frame.fin, frame.masked, frame.payload) != (
                Opcode.TEXT,
                True,
                False,
                payload,
            ):
                errors.append(f"{name}: frame {i} is {frame!r:.100}, not {payload!r}")
                return i
        if pos != len(buf):
            errors.append(f"{name}: {len(buf) - pos} bytes after the last expected frame")
        return len(payloads)

    def latency(
        self,
        groups: list[Group],
        control: Control,
        run: int,
        count: int,
        rate: float,
        warmup: int,
        busy_poll: bool = True,
        timeout: float = 60.0,
    ) -> Latencies:
        """Stream ``count`` stamped messages at ``rate``/s from ``control``'s server; every
        frame on every subscriber of ``groups`` decoded and its sequence number checked.

        With ``busy_poll`` the client never sleeps in ``epoll_wait``, so no delivery has to
        wake it (on a VM, waking the other CPU costs the server tens of µs per delivery).
        """
        frame_size = 2 + MESSAGE_SIZE
        header = bytes((0x80 | Opcode.TEXT, MESSAGE_SIZE))
        names = [g.name for g in groups]
        arrival: dict[str, array[int]] = {n: array("q") for n in names}
        observed: dict[str, array[int]] = {n: array("q") for n in names}
        first = {n: [1 << 62] * count for n in names}
        last = {n: [0] * count for n in names}
        errors: list[str] = []
        members = set()
        for g in groups:
            for member in g.subs:
                member.buf, member.next_seq = bytearray(), 0
                member.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                members.add(member.fd)
        remaining = len(members)
        verified = shared_reads = unstamped = polls = idle_polls = 0
        by_fd, unpack = self.by_fd, _TIMESPEC.unpack_from
        client0, t0 = time.process_time(), time.perf_counter()
        control.send("stream", run=run, count=count, rate=rate)
        deadline = t0 + count / rate + timeout
        wait = 0.0 if busy_poll else 0.05
        while remaining and time.perf_counter() < deadline:
            events = self.poller.poll(wait)
            polls += 1
            idle_polls += not events
            for fd, _ in events:
                sub = by_fd.get(fd)
                if sub is None:
                    continue
                if fd not in members:
                    self._read_other(sub, None)
                    continue
                try:
                    data, ancillary, _, _ = sub.sock.recvmsg(READ_SIZE, _ANCILLARY)
                except BlockingIOError:
                    continue
                except OSError as error:
                    data, ancillary = b"", []
                    errors.append(f"recv: {error}")
                now = arrived = time.time_ns()
                if not data:
                    self._lost(sub, "closed during the latency run")
                    members.discard(fd)
                    remaining -= 1
                    continue
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
                pos, name = 0, sub.group.name
                while len(buf) - pos >= frame_size:
                    stop = pos + frame_size
                    try:
                        if buf[pos : pos + 2] != header:
                            raise ValueError(f"bad frame {bytes(buf[pos:stop])!r}")
                        got_run, seq, published = parse_latency_message(bytes(buf[pos + 2 : stop]))
                        if (got_run, seq) != (run, sub.next_seq):
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
                        arrival[name].append(delay)
                        observed[name].append(now - published)
                    first[name][seq] = min(first[name][seq], delay)
                    last[name][seq] = max(last[name][seq], delay)
                    if seq + 1 == count:
                        remaining -= 1
                del buf[:pos]
        seconds, client_cpu = time.perf_counter() - t0, time.process_time() - client0
        if remaining:
            errors.append(f"{remaining} subscribers did not get all {count} messages")
        reply = control.reply(timeout)
        self.service(0.05)
        for g in groups:
            if any(s.fd in by_fd and (s.next_seq != count or s.buf) for s in g.subs):
                errors.append(f"a {g.name} subscriber stopped short of {count} messages")
        if unstamped:
            errors.append(f"{unstamped} reads without a kernel receive timestamp")
        return Latencies(
            arrival,
            observed,
            {n: v[warmup:] for n, v in first.items()},
            {n: v[warmup:] for n, v in last.items()},
            seconds,
            client_cpu,
            verified,
            reply,
            tuple(errors),
            polls,
            idle_polls,
            shared_reads,
        )
