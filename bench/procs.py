"""Starting, pinning, measuring and stopping the server processes, by PID only."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench.servers import HOST, KINDS

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def cpu_count() -> int:
    return len(os.sched_getaffinity(0))


def pin(pid: int, cpus: set[int] | None) -> None:
    """Pin ``pid`` (0 = this process) to ``cpus``; ``None`` leaves it free."""
    if cpus is not None:
        os.sched_setaffinity(pid, cpus)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def process_cpu(pid: int) -> float:
    """User + system CPU seconds used so far by ``pid`` (all its threads)."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        # The command name may hold spaces; fields are counted after its ')'.
        fields = stat.read().rpartition(b")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def process_rss(pid: int) -> int:
    """Resident set size of ``pid``, in bytes (from /proc/PID/statm)."""
    with open(f"/proc/{pid}/statm", "rb") as statm:
        return int(statm.read().split()[1]) * PAGE_SIZE


def spawn_listening(
    command: list[str],
    cpus: set[int] | None,
    log_path: Path,
    port: int,
    label: str,
    timeout: float,
) -> subprocess.Popen[bytes]:
    """Start ``command`` from the repository root, pinned to ``cpus``, output to
    ``log_path``, and wait until it listens on ``port`` (killed if it never does).

    Raises:
        RuntimeError: it exited or did not listen within ``timeout`` seconds.
    """
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )
    # Children inherit the client's CPU; move the server to its own at once.
    pin(proc.pid, cpus)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{label} exited with {proc.returncode}: {tail}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    proc.wait(timeout=10)
    raise RuntimeError(f"{label} did not listen on {port} within {timeout} s")


class Server:
    """One server process: ``python -m bench.servers --kind KIND --port PORT``."""

    def __init__(
        self,
        kind: str,
        cpus: set[int] | None,
        log_dir: Path,
        *,
        gc_stats: Path | None = None,
        name: str | None = None,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown server kind {kind!r}")
        self.kind = kind
        #: What the results call it: the kind, or e.g. "raw2" for a second raw process.
        self.name = name or kind
        self.label = KINDS[kind][1] if name is None else f"{KINDS[kind][1]} ({name})"
        self.cpus = cpus
        self.port = free_port()
        self.log_path = log_dir / f"server-{self.name}-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.gc_stats = gc_stats

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 20.0) -> Server:
        command = [sys.executable, "-m", "bench.servers", "--kind", self.kind]
        command += ["--port", str(self.port)]
        if self.gc_stats is not None:
            command += ["--gc-stats", str(self.gc_stats)]
        self.proc = spawn_listening(
            command, self.cpus, self.log_path, self.port, self.label, timeout
        )
        return self

    def cpu(self) -> float:
        return process_cpu(self.pid)

    def rss(self) -> int:
        return process_rss(self.pid)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (SIGINT for a GC run), then SIGKILL after ``timeout``: this process only,
        by PID."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        # SIGINT lets every server run its atexit hooks (uvicorn re-raises the
        # signal it caught, and only SIGINT becomes an exception that unwinds).
        proc.send_signal(signal.SIGINT if self.gc_stats is not None else signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
