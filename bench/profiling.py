"""CPU profile of a server under load: py-spy attached by PID, read back as collapsed stacks.

py-spy samples from outside the process. It pauses the server for each
sample (a few tens of µs, 250 times a second): without that
(``--nonblocking``) about a third of the stacks came back torn on this
machine (frames of different moments spliced together). ``--function``
folds samples by function rather than by line. Idle samples (the event loop
waiting in ``epoll``) are not recorded, so shares are of the server's busy time.
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
_PREFIXES = (
    re.compile(r"^.*/site-packages/"),
    re.compile(r"^.*/lib/python3\.\d+/"),
)


def py_spy() -> str | None:
    """The py-spy executable: next to this Python first (the venv), then on PATH."""
    local = Path(sys.executable).parent / "py-spy"
    if local.exists():
        return str(local)
    return shutil.which("py-spy")


def short_frame(frame: str, root: Path) -> str:
    """``anext (aiohttp_spry/websocket.py:512)`` instead of the absolute path."""
    match = _FRAME.match(frame)
    if not match:
        return frame
    path = match["file"]
    root_prefix = f"{root}/"
    if path.startswith(root_prefix):
        path = path[len(root_prefix) :]
    else:
        for prefix in _PREFIXES:
            path = prefix.sub("", path)
    line = f":{match['line']}" if match["line"] else ""
    return f"{match['name']} ({path}{line})"


def is_spry_frame(frame: str) -> bool:
    """Frames of the package itself, including attrs' generated ``__init__`` of its classes."""
    return "aiohttp_spry/" in frame or "aiohttp_spry." in frame


@attrs.frozen
class Profile:
    samples: int
    self_time: list[tuple[str, int]]
    inclusive: list[tuple[str, int]]
    spry_self: int
    spry_self_frames: list[tuple[str, int]]

    def share(self, count: int) -> float:
        return count / self.samples if self.samples else 0.0


def parse_collapsed(text: str, root: Path, top: int = 15) -> Profile:
    """Read py-spy's ``--format raw`` output (``frame;frame;frame count`` per line)."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [short_frame(frame, root) for frame in stack.split(";")]
        # py-spy's first element is the thread ("process 123:..."/"thread (0x...)")
        # when asked for; with the defaults every element is a Python frame.
        total += count
        self_time[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    spry = Counter({frame: n for frame, n in self_time.items() if is_spry_frame(frame)})
    return Profile(
        samples=total,
        self_time=self_time.most_common(top),
        inclusive=inclusive.most_common(top),
        spry_self=sum(spry.values()),
        spry_self_frames=spry.most_common(top),
    )


class Recorder:
    """``py-spy record`` attached to ``pid`` for ``seconds``, in the background."""

    def __init__(self, pid: int, seconds: float, output: Path, rate: int = 250) -> None:
        exe = py_spy()
        if exe is None:
            raise FileNotFoundError("py-spy is not installed (pip install -e '.[bench]')")
        self.output = output
        self.log = output.with_suffix(".log")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    exe,
                    "record",
                    "--pid",
                    str(pid),
                    "--duration",
                    str(max(1, round(seconds))),
                    "--rate",
                    str(rate),
                    "--function",
                    "--format",
                    "raw",
                    "--output",
                    str(output),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait(self, timeout: float) -> str:
        """Wait for py-spy to finish; the collapsed stacks it wrote."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            self.proc.wait(5)
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
