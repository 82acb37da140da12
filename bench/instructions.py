"""Instructions per operation, counted by valgrind's callgrind: the noise-free complement
to the timed head-to-heads.

``python -m bench.instructions [--ops 500] [--output bench/RESULTS-instructions.md]``
starts each server under ``valgrind --tool=callgrind`` and drives it from this process,
one operation at a time on blocking sockets:

- ``handshakes``: a whole WebSocket lifecycle (connect, upgrade, close handshake, FIN);
- ``echo_text_32``: 8 masked 32-byte text messages in one write, their 8 echoes read back;
- ``http``: ``GET /hello`` on one keep-alive connection.

Each server first serves ``--warmup`` operations uncounted; then the counters are zeroed
(``callgrind_control -z``), ``--ops`` operations run and the counts are dumped
(``callgrind_control -d``). The figure is user-space instructions of the server process
per operation: the same from run to run to about 0.3% (dict hashing is seeded per
process), where the timed figures move by several percent. It leaves out the kernel's
share (syscalls are the same for every server: ``strace -c`` counts them equal) and
what instructions cost (cache misses, the interpreter's lower IPC on Python code), so a
time ratio sits further from 1 than the instruction ratio.

Servers: raw aiohttp, aiohttp_spry, and aiohttp_spry with the client frame check off
(``bench.masking_ab --serve off``), whose difference is the check's cost.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import attrs

from bench.client import ECHO_PATH, HELLO_BODY, HELLO_PATH
from bench.system import HOST, ROOT
from bench.ws import CLOSE_REPLY, CLOSE_REQUEST, check_101, request
from tests.support.procs import free_port, stop_process, subprocess_env, wait_listening
from tests.support.wire import TEXT, client_frame

SERVERS = {
    "raw": ["-m", "bench.servers.raw_aiohttp"],
    "spry": ["-m", "bench.servers.spry_aiohttp"],
    "spry_no_check": ["-m", "bench.masking_ab", "--serve", "off"],
}
LABELS = {
    "raw": "raw aiohttp",
    "spry": "aiohttp_spry",
    "spry_no_check": "aiohttp_spry, client frame check off",
}
LOADS = ("handshakes", "echo_text_32", "http")
BASE = "raw"
ECHO_BATCH = 8
_ECHO_REQUEST = client_frame(TEXT, b"x" * 32) * ECHO_BATCH
_ECHO_REPLY_SIZE = (2 + 32) * ECHO_BATCH
_STARTUP_TIMEOUT = 180.0  # Python imports under callgrind take ~40x longer


def valgrind() -> str | None:
    return shutil.which("valgrind")


@attrs.frozen
class Count:
    server: str
    load: str
    ops: int
    instructions: int

    @property
    def per_op(self) -> float:
        return self.instructions / self.ops


class Driver:
    """One blocking client per server: each call of an operation does it once, checked."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._keepalive: socket.socket | None = None
        self._ws: socket.socket | None = None

    def handshakes(self) -> None:
        with socket.create_connection((HOST, self.port), timeout=30) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            rest = self._upgrade(sock)
            sock.sendall(CLOSE_REQUEST)
            while chunk := sock.recv(4096):
                rest += chunk
            if rest != CLOSE_REPLY:
                raise AssertionError(f"close reply {rest!r}, expected {CLOSE_REPLY!r}")

    def echo_text_32(self) -> None:
        if self._ws is None:
            self._ws = socket.create_connection((HOST, self.port), timeout=30)
            self._ws.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._upgrade(self._ws)
        self._ws.sendall(_ECHO_REQUEST)
        got = 0
        while got < _ECHO_REPLY_SIZE:
            chunk = self._ws.recv(65536)
            if not chunk:
                raise AssertionError("the echo connection closed")
            got += len(chunk)
        if got != _ECHO_REPLY_SIZE:
            raise AssertionError(f"{got} echo bytes, expected {_ECHO_REPLY_SIZE}")

    def http(self) -> None:
        if self._keepalive is None:
            self._keepalive = socket.create_connection((HOST, self.port), timeout=30)
        self._keepalive.sendall(
            f"GET {HELLO_PATH} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n\r\n".encode()
        )
        answer = b""
        while not answer.endswith(HELLO_BODY.encode()):
            chunk = self._keepalive.recv(4096)
            if not chunk:
                raise AssertionError(f"connection closed after {answer!r}")
            answer += chunk
        if not answer.startswith(b"HTTP/1.1 200"):
            raise AssertionError(f"answer {answer[:40]!r}")

    def _upgrade(self, sock: socket.socket) -> bytes:
        """Send the handshake, check the 101; return the bytes read after it."""
        sock.sendall(request(self.port, ECHO_PATH))
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(4096)
            if not chunk:
                raise AssertionError(f"closed during the handshake after {buffer!r}")
            buffer += chunk
        head, _, rest = buffer.partition(b"\r\n\r\n")
        problem = check_101(head)
        if problem is not None:
            raise AssertionError(f"bad 101: {problem}")
        return rest

    def close(self) -> None:
        for sock in (self._keepalive, self._ws):
            if sock is not None:
                sock.close()


def count(server: str, loads: tuple[str, ...], ops: int, warmup: int, work: Path) -> list[Count]:
    """Instructions of ``server`` for ``ops`` operations of each load, counted separately."""
    tool = valgrind()
    if tool is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    port = free_port()
    out = work / f"{server}.callgrind"
    command = [
        tool,
        "--tool=callgrind",
        "--collect-systime=no",
        f"--callgrind-out-file={out}.%p",
        sys.executable,
        *SERVERS[server],
        "--port",
        str(port),
    ]
    log_path = work / f"{server}.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        command, cwd=ROOT, env=subprocess_env(), stdout=log, stderr=subprocess.STDOUT
    )
    counts = []
    try:
        wait_listening(
            proc, port, timeout=_STARTUP_TIMEOUT, log_path=log_path, label=LABELS[server]
        )
        driver = Driver(port)
        for load in loads:
            operation: Callable[[], None] = getattr(driver, load)
            for _ in range(warmup):
                operation()
            _control(proc.pid, "-z")
            for _ in range(ops):
                operation()
            dumped = _dump(proc.pid, out)
            counts.append(Count(server, load, ops, dumped))
        driver.close()
    finally:
        stop_process(proc)
        log.close()
    return counts


def _control(pid: int, flag: str) -> None:
    subprocess.run(
        ["callgrind_control", flag, str(pid)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=60,
    )


def _dump(pid: int, out: Path) -> int:
    """Dump the counters since the last zeroing; return their total instructions."""
    before = set(out.parent.glob(f"{out.name}.{pid}.*"))
    _control(pid, "-d")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        new = set(out.parent.glob(f"{out.name}.{pid}.*")) - before
        for path in new:
            for line in path.read_text(errors="replace").splitlines():
                if line.startswith(("summary:", "totals:")):
                    return int(line.split()[1])
        time.sleep(0.2)
    raise RuntimeError(f"callgrind wrote no dump for {pid} within 60 s")


def render(counts: list[Count], ops: int, warmup: int) -> str:
    per = {(c.server, c.load): c.per_op for c in counts}
    servers = [s for s in SERVERS if any(c.server == s for c in counts)]
    lines = [
        "# Instructions per operation (callgrind)",
        "",
        f"- Command: `python -m bench.instructions --ops {ops} --warmup {warmup}`",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"revision {_revision()}; CPython {sys.version.split()[0]}",
        "- Method: each server under `valgrind --tool=callgrind`, driven one operation at a"
        " time from one blocking client; counters zeroed after the warm-up, dumped after"
        " the counted operations. User-space instructions of the server only; see"
        " `bench/instructions.py` for what this leaves out.",
        "",
        "| load | " + " | ".join(LABELS[s] for s in servers) + " | raw / aiohttp_spry |",
        "| --- | " + " | ".join("---" for _ in servers) + " | --- |",
    ]
    for load in LOADS:
        if (BASE, load) not in per:
            continue
        cells = [f"{per[(s, load)] / 1000:,.1f} k" if (s, load) in per else "" for s in servers]
        ratio = f"{per[(BASE, load)] / per[('spry', load)]:.3f}" if ("spry", load) in per else ""
        lines.append(f"| {load} | " + " | ".join(cells) + f" | {ratio} |")
    check = [
        (load, per[("spry", load)] - per[("spry_no_check", load)])
        for load in LOADS
        if ("spry", load) in per and ("spry_no_check", load) in per
    ]
    if check:
        lines += [
            "",
            "The client frame check's own cost (aiohttp_spry less the same server without it):",
            "",
        ]
        lines += [
            f"- {load}: {delta / 1000:,.1f} k instructions per operation" for load, delta in check
        ]
    return "\n".join(lines) + "\n"


def _revision() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=500, help="counted operations per load")
    parser.add_argument("--warmup", type=int, default=300, help="uncounted operations first")
    parser.add_argument("--servers", default=",".join(SERVERS), help="a subset of the servers")
    parser.add_argument("--loads", default=",".join(LOADS), help="a subset of the loads")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "RESULTS-instructions.md")
    args = parser.parse_args(argv)
    servers = [s for s in args.servers.split(",") if s]
    loads = tuple(load for load in args.loads.split(",") if load)
    for name in servers:
        if name not in SERVERS:
            parser.error(f"--servers: unknown server {name!r}; choose from {', '.join(SERVERS)}")
    for load in loads:
        if load not in LOADS:
            parser.error(f"--loads: unknown load {load!r}; choose from {', '.join(LOADS)}")
    counts: list[Count] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in servers:
            counts += count(name, loads, args.ops, args.warmup, Path(tmp))
            for c in counts[-len(loads) :]:
                print(f"{LABELS[name]:40} {c.load:14} {c.per_op / 1000:10,.1f} k instructions/op")
    report = render(counts, args.ops, args.warmup)
    args.output.write_text(report)
    args.output.with_name("results-instructions.json").write_text(
        json.dumps([attrs.asdict(c) for c in counts], indent=1) + "\n"
    )
    print(report)


if __name__ == "__main__":
    main()
