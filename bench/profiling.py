"""CPU profile of a server under load: py-spy attached by PID, read back as collapsed stacks.

py-spy pauses the server for each sample (tens of µs, 250 times a second): without that
(``--nonblocking``) about a third of the stacks came back torn on this machine. Idle
samples (the loop waiting in ``epoll``) are not recorded, so shares are of busy time.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import attrs

_FRAME = re.compile(r"^(?P<name>.*) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")
_PREFIX = re.compile(r"^.*/(site-packages|lib/python3\.\d+)/")


def py_spy() -> str | None:
    """The py-spy executable: next to this Python first (the venv), then on PATH."""
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def short_frame(frame: str, root: Path) -> str:
    """``anext (aiohttp_spry/websocket.py:512)`` instead of the absolute path."""
    match = _FRAME.match(frame)
    if not match:
        return frame
    path = match["file"].removeprefix(f"{root}/")
    path = _PREFIX.sub("", path)
    line = f":{match['line']}" if match["line"] else ""
    return f"{match['name']} ({path}{line})"


@attrs.frozen
class Profile:
    samples: int
    self_time: list[tuple[str, int]]
    spry_self: int
    spry_self_frames: list[tuple[str, int]]

    def share(self, count: int) -> float:
        return count / self.samples if self.samples else 0.0


def parse_collapsed(text: str, root: Path, top: int = 15) -> Profile:
    """Read py-spy's ``--format raw`` output (``frame;frame;frame count`` per line)."""
    self_time: Counter[str] = Counter()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            self_time[short_frame(stack.split(";")[-1], root)] += int(count)
    # The package's frames, including attrs' generated ``__init__`` of its classes.
    spry = Counter(
        {f: n for f, n in self_time.items() if "aiohttp_spry/" in f or "aiohttp_spry." in f}
    )
    return Profile(
        sum(self_time.values()),
        self_time.most_common(top),
        sum(spry.values()),
        spry.most_common(top),
    )


class Recorder:
    """``py-spy record`` attached to ``pid`` for ``seconds``, in the background."""

    def __init__(self, pid: int, seconds: float, output: Path, rate: int = 250) -> None:
        exe = py_spy()
        if exe is None:
            raise FileNotFoundError("py-spy is not installed (pip install -e '.[bench]')")
        self.output, self.log = output, output.with_suffix(".log")
        command = [exe, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds)))]
        command += ["--rate", str(rate), "--function", "--format", "raw", "--output", str(output)]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )

    def wait(self, timeout: float) -> str:
        """Wait for py-spy to finish; the collapsed stacks it wrote."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
        if not self.output.exists():
            raise RuntimeError(f"py-spy wrote no profile: {self.log.read_text(errors='replace')}")
        return self.output.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
