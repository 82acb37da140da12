"""Machine facts, package versions, and per-CPU busy time from /proc/stat."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import attrs

PACKAGES = (
    "aiohttp_spry",
    "aiohttp",
    "attrs",
    "multidict",
    "yarl",
    "propcache",
    "frozenlist",
    "aiosignal",
    "starlette",
    "uvicorn",
    "httptools",
    "websockets",
    "py-spy",
)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def package_versions() -> dict[str, str]:
    versions = {"python": f"{platform.python_implementation()} {platform.python_version()}"}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    versions["wrk"] = wrk_version() or "not installed"
    return versions


def wrk_version() -> str | None:
    exe = shutil.which("wrk")
    if exe is None:
        return None
    # wrk prints its version in the usage text, on stdout or stderr, and exits 1.
    out = subprocess.run([exe, "-v"], capture_output=True, text=True, timeout=10, check=False)
    first = (out.stdout or out.stderr).strip().splitlines()
    return first[0].split("Copyright")[0].strip() if first else None


def revision_change(before: str, after: str) -> str | None:
    """A note for the results when aiohttp_spry changed during a run, else ``None``."""
    if after == before:
        return None
    return (
        f"aiohttp_spry changed during the run ({before} at the start, {after} at the end): "
        "rounds may have measured different code"
    )


def git_revision(root: Path) -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "aiohttp_spry"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{rev} (aiohttp_spry/ modified)" if dirty else rev


def machine_facts() -> dict[str, str]:
    return {
        "nproc": str(os.cpu_count()),
        "usable CPUs": ",".join(map(str, sorted(os.sched_getaffinity(0)))),
        "CPU model": cpu_model(),
        "kernel": platform.release(),
        "memory": f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.1f} GiB",
        "python executable": sys.executable,
    }


@attrs.frozen
class CpuTimes:
    """Cumulative busy and total jiffies per CPU (``cpu0``, ``cpu1``...)."""

    busy: dict[str, int]
    total: dict[str, int]

    @classmethod
    def read(cls) -> CpuTimes:
        busy: dict[str, int] = {}
        total: dict[str, int] = {}
        with open("/proc/stat") as stat:
            for line in stat:
                if not (line.startswith("cpu") and line[3].isdigit()):
                    continue
                name, *fields = line.split()
                values = [int(value) for value in fields[:8]]  # up to steal
                idle = values[3] + values[4]  # idle + iowait
                total[name] = sum(values)
                busy[name] = total[name] - idle
        return cls(busy, total)

    def busy_since(self, before: CpuTimes) -> dict[str, float]:
        """Busy fraction of each CPU between ``before`` and this reading."""
        shares = {}
        for name, total in self.total.items():
            elapsed = total - before.total.get(name, 0)
            shares[name] = (
                (self.busy[name] - before.busy.get(name, 0)) / elapsed if elapsed else 0.0
            )
        return shares
