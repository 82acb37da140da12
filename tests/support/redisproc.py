"""A real ``redis-server`` for tests and benchmarks, on a free 127.0.0.1 port, stopped by PID.

By default nothing is persisted (no RDB, no AOF) and the server runs in a
temporary directory, so a kill and a restart on the same port starts empty,
like a Redis that crashed and came back. With ``appendonly=True`` it keeps an
append-only file (``appendfsync always``) there, so a restart after a SIGKILL
comes back with every write it acknowledged.

``host`` picks another loopback address (``127.0.0.2``: a "separate host") and
``extra_args`` adds ``redis-server`` options after the defaults (later options
win), e.g. ``("--cluster-enabled", "yes")`` for a cluster node.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from .procs import HOST, free_port, stop_process

__all__ = ["RedisProcess", "redis_server_path"]

START_TIMEOUT = 10.0


def redis_server_path() -> str | None:
    """The ``redis-server`` executable (Debian package ``redis-server``), or ``None``."""
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )


class RedisProcess:
    """One ``redis-server`` this suite started; :meth:`kill` and :meth:`start` it at will."""

    def __init__(
        self,
        executable: str,
        port: int | None = None,
        *,
        appendonly: bool = False,
        host: str = HOST,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.executable = executable
        self.appendonly = appendonly
        self.host = host
        self.extra_args = tuple(extra_args)
        self.port = port or free_port(host)
        self._dir = Path(tempfile.mkdtemp(prefix="spry-redis-"))
        self.log_path = self._dir / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def dir(self) -> Path:
        """Its working directory (kept across restarts, removed by :meth:`cleanup`)."""
        return self._dir

    @property
    def pid(self) -> int | None:
        """The PID of the current run, or ``None`` when it was never started."""
        return self.proc.pid if self.proc is not None else None

    def running(self) -> bool:
        """Whether the process of the current run is alive."""
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        """Start (or restart) on the same port and wait until it answers PING."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                self.executable,
                "--bind",
                self.host,
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "yes" if self.appendonly else "no",
                "--appendfsync",
                "always",
                "--dir",
                str(self._dir),
                "--protected-mode",
                "yes",
                *self.extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}: {self.log()}")
            if self.ping():
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(
            f"redis-server did not answer on {self.host}:{self.port} within {START_TIMEOUT}s"
        )

    def ping(self) -> bool:
        """Whether the server answers ``PING`` right now (RESP over a plain socket)."""
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def command(self, *args: str) -> bytes:
        """Send one command (inline RESP) and return the raw reply, e.g. ``PUBSUB NUMSUB ch``."""
        with socket.create_connection((self.host, self.port), timeout=2.0) as sock:
            parts = [f"${len(a.encode())}\r\n{a}\r\n".encode() for a in args]
            sock.sendall(f"*{len(args)}\r\n".encode() + b"".join(parts))
            return sock.recv(65536)

    def numsub(self, channel: str) -> int:
        """How many connections subscribe to ``channel`` (``PUBSUB NUMSUB``)."""
        reply = self.command("PUBSUB", "NUMSUB", channel).split(b"\r\n")
        # *2 / $len / channel / :count
        return int(reply[3][1:])

    def kill(self) -> None:
        """SIGKILL, like a crash: connections drop without a goodbye."""
        if self.proc is not None:
            stop_process(self.proc, signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.proc is not None:
            stop_process(self.proc)

    def log(self) -> str:
        """Everything ``redis-server`` logged so far (all its runs)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def cleanup(self) -> None:
        """Stop it and remove its temporary directory."""
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)
