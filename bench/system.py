"""Processes, CPU time and machine facts, shared by both harnesses; processes are stopped by PID."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import resource
import signal
import subprocess
import sys
from pathlib import Path

import attrs

from aiohttp_spry import raise_open_files_limit
from tests.support.procs import HOST, free_port, spawn_listening, stop_process
from tests.support.procs import REPO_ROOT as ROOT

__all__ = ["HOST", "ROOT", "CpuTimes", "Proc"]

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def pin(pid: int, cpus: set[int] | None) -> None:
    """Pin ``pid`` (0 = this process) to ``cpus``; ``None`` leaves it free."""
    if cpus is not None:
        os.sched_setaffinity(pid, cpus)


def raise_fd_limit() -> tuple[int, int]:
    """Soft RLIMIT_NOFILE up to the hard limit (thousands of sockets); the limits after."""
    raise_open_files_limit()
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def process_cpu(pid: int) -> float:
    """User + system CPU seconds used so far by ``pid``."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        # The command name may hold spaces: count the fields after its ')'.
        fields = stat.read().rpartition(b")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


class Proc:
    """One server process, ``python -m MODULE --port PORT ARGS...`` from the repository root,
    pinned to ``cpus``, its output in ``log_dir``."""

    def __init__(
        self,
        module: str,
        label: str,
        cpus: set[int] | None,
        log_dir: Path,
        *args: str,
        name: str = "",
        host: str = HOST,
    ) -> None:
        self.module, self.label, self.cpus, self.args = module, label, cpus, args
        #: The loopback address it listens on (``--host``, when not the default).
        self.host = host
        #: What the results call it (e.g. "raw2" for a second raw aiohttp process).
        self.name = name or module.rpartition(".")[2]
        self.port = free_port(host)
        self.log_path = log_dir / f"{self.name}-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        #: SIGINT for a GC-statistics run: it lets every server run its atexit hooks
        #: (uvicorn re-raises the signal it caught; only SIGINT unwinds as an exception).
        self.stop_signal = signal.SIGINT if "--gc-stats" in args else signal.SIGTERM

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.label} is not started"
        return self.proc.pid

    def start(self, timeout: float = 30.0) -> Proc:
        command = [sys.executable, "-m", self.module, "--port", str(self.port), *self.args]
        if self.host != HOST:
            command += ["--host", self.host]
        self.proc = spawn_listening(
            command,
            self.port,
            self.log_path,
            host=self.host,
            cpus=self.cpus,
            timeout=timeout,
            label=self.label,
        )
        return self

    def cpu(self) -> float:
        return process_cpu(self.pid)

    def rss(self) -> int:
        """Resident set size in bytes (/proc/PID/statm)."""
        with open(f"/proc/{self.pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE

    def pause(self, paused: bool) -> None:
        """SIGSTOP (or SIGCONT), so it cannot take the server CPU from another's burst."""
        if self.running():
            os.kill(self.pid, signal.SIGSTOP if paused else signal.SIGCONT)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, self.stop_signal)

    def __enter__(self) -> Proc:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@attrs.frozen
class CpuTimes:
    """Cumulative busy and total jiffies per CPU (``cpu0``, ``cpu1``...), from /proc/stat."""

    busy: dict[str, int]
    total: dict[str, int]

    @classmethod
    def read(cls) -> CpuTimes:
        busy: dict[str, int] = {}
        total: dict[str, int] = {}
        with open("/proc/stat") as stat:
            for line in stat:
                if line.startswith("cpu") and line[3].isdigit():
                    name, *fields = line.split()
                    values = [int(value) for value in fields[:8]]  # up to steal
                    total[name] = sum(values)
                    busy[name] = total[name] - values[3] - values[4]  # minus idle, iowait
        return cls(busy, total)

    def busy_since(self, before: CpuTimes) -> dict[str, float]:
        """Busy fraction of each CPU between ``before`` and this reading."""
        shares = {}
        for name, total in self.total.items():
            elapsed = total - before.total.get(name, 0)
            busy = self.busy[name] - before.busy.get(name, 0)
            shares[name] = busy / elapsed if elapsed else 0.0
        return shares


def versions(*extra: str) -> dict[str, str]:
    """Python's and each package's version: aiohttp_spry, its dependencies, then ``extra``."""
    found = {"python": f"{platform.python_implementation()} {platform.python_version()}"}
    core = ("aiohttp_spry", "aiohttp", "attrs", "multidict", "yarl", "propcache", "frozenlist")
    for name in [*core, "aiosignal", *extra]:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def git_revision() -> str:
    """The short HEAD, marked when aiohttp_spry/ has uncommitted changes."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        rev = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--", "aiohttp_spry")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{rev} (aiohttp_spry/ modified)" if dirty else rev


def machine_facts() -> dict[str, str]:
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(
                (
                    line.split(":", 1)[1].strip()
                    for line in cpuinfo
                    if line.startswith("model name")
                ),
                model,
            )
    except OSError:
        pass
    return {
        "nproc": str(os.cpu_count()),
        "CPU model": model,
        "kernel": platform.release(),
        "memory": f"{_PAGE * os.sysconf('SC_PHYS_PAGES') / 2**30:.1f} GiB",
        "python executable": sys.executable,
    }
