"""Child processes for tests and benchmarks: free ports, start one, wait until it listens,
stop it by PID.

Only processes started here are ever signalled, each by its own PID.

Example::

    port = free_port()
    proc = spawn_listening(
        [sys.executable, "-m", "example_app", "--port", str(port)], port, tmp_path / "log"
    )
    try:
        ...
    finally:
        stop_process(proc, signal.SIGINT)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = [
    "HOST",
    "REPO_ROOT",
    "free_port",
    "free_port_pair",
    "is_listening",
    "log_tail",
    "spawn_listening",
    "stop_process",
    "subprocess_env",
    "wait_listening",
]

#: Loopback only: nothing these helpers start listens beyond this machine.
HOST = "127.0.0.1"
#: The repository root: the working directory of every child process by default.
REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port(host: str = HOST) -> int:
    """A TCP port on ``host`` that nothing listened on a moment ago (the OS's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def free_port_pair(host: str = HOST) -> int:
    """A port P with P and P+1 both free on ``host`` (``adev`` also serves an aux app on P+1).

    Raises:
        RuntimeError: no such pair came up in 50 tries.
    """
    for _ in range(50):
        port = free_port(host)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as aux:
            try:
                aux.bind((host, port + 1))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free pair of ports found on {host}")


def subprocess_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for child Pythons: this one without proxies, unbuffered UTF-8
    output, no ``.pyc`` writes, then ``extra``.
    """
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra or {})
    return env


def is_listening(port: int, host: str = HOST) -> bool:
    """Whether a TCP connection to ``host:port`` is accepted right now."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def log_tail(log_path: Path | None, chars: int = 4000) -> str:
    """The last ``chars`` characters of a child's log (``""`` when there is none)."""
    if log_path is None:
        return ""
    try:
        return log_path.read_bytes().decode("utf-8", errors="replace")[-chars:]
    except OSError:
        return ""


def wait_listening(
    proc: subprocess.Popen[bytes],
    port: int,
    *,
    host: str = HOST,
    timeout: float = 15.0,
    log_path: Path | None = None,
    label: str | None = None,
) -> None:
    """Block until ``proc`` accepts connections on ``host:port``.

    Raises:
        RuntimeError: ``proc`` exited first, or did not listen within ``timeout``
            seconds (it is then left running: the caller stops it); the message
            carries the tail of ``log_path``.
    """
    name = label or f"process {proc.pid}"
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{name} exited with {proc.returncode} before listening on {host}:{port}:\n"
                f"{log_tail(log_path)}"
            )
        if is_listening(port, host):
            return
        if time.monotonic() >= deadline:
            raise RuntimeError(
                f"{name} did not listen on {host}:{port} within {timeout} s:\n{log_tail(log_path)}"
            )
        time.sleep(0.05)


def spawn_listening(
    command: Sequence[str],
    port: int,
    log_path: Path,
    *,
    host: str = HOST,
    cwd: Path = REPO_ROOT,
    env: Mapping[str, str] | None = None,
    cpus: set[int] | None = None,
    timeout: float = 15.0,
    label: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``command`` in ``cwd`` with its output in ``log_path`` and wait until it listens
    on ``host:port``; killed (by PID) if it never does.

    ``env`` defaults to :func:`subprocess_env`; ``cpus`` pins the child at once (children
    inherit the parent's affinity, which a benchmark client wants for itself).

    Raises:
        RuntimeError: it exited or did not listen within ``timeout`` seconds.
    """
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            list(command),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else subprocess_env(),
        )
    if cpus is not None:
        os.sched_setaffinity(proc.pid, cpus)
    try:
        wait_listening(proc, port, host=host, timeout=timeout, log_path=log_path, label=label)
    except RuntimeError:
        stop_process(proc, signal.SIGKILL)
        raise
    return proc


def stop_process(
    proc: subprocess.Popen[bytes],
    sig: signal.Signals = signal.SIGTERM,
    *,
    timeout: float = 10.0,
) -> int:
    """Send ``sig`` to ``proc`` (by its PID, nothing else), then SIGKILL after ``timeout``
    seconds; return its exit code. A process that already ended is left alone.
    """
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait(timeout=timeout)
