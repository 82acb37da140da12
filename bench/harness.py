"""What both harnesses share: pinning, the noise guard, the command line and the output files."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import attrs

from bench.report import kept_sections
from bench.system import CpuTimes, git_revision, machine_facts, pin, raise_fd_limit

T = TypeVar("T")
HERE = Path(__file__).resolve().parent
Log = Callable[[str], None]


@attrs.define
class Settings:
    """Settings of both harnesses. Noisy neighbours: before each measurement wait (bounded)
    for the CPUs to be nearly idle, and measure again when more than ``max_other`` cores went
    to something other than the server and the client (a quiet machine stays under 0.1)."""

    rounds: int = 5
    pin: bool = True
    output: Path = HERE / "RESULTS.md"
    quiet_below: float = 0.25
    quiet_wait: float = 15.0
    max_other: float = 0.3
    retries: int = 2
    noise_budget: float = 180.0


class Harness:
    """Server CPU and client CPU, a work directory, problems and notes, the noise budget."""

    def __init__(self, settings: Settings, log: Log, prefix: str) -> None:
        self.settings, self.log = settings, log
        cpus = sorted(os.sched_getaffinity(0))
        pinned = settings.pin and len(cpus) >= 2
        self.server_cpus = {cpus[0]} if pinned else None
        self.client_cpus = {cpus[1]} if pinned else None
        self.workdir = Path(tempfile.mkdtemp(prefix=prefix))
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.noise_spent = 0.0

    def wait_quiet(self, idle: Callable[[float], object] = time.sleep) -> float:
        """Wait (at most ``quiet_wait`` s, within the noise budget) for the machine to go idle;
        ``idle(seconds)`` passes the time (the fan-out client answers pings meanwhile)."""
        s = self.settings
        started = time.monotonic()
        while True:
            before = CpuTimes.read()
            idle(0.2)
            busy = sum(CpuTimes.read().busy_since(before).values())
            waited = time.monotonic() - started
            if (
                busy < s.quiet_below
                or waited > s.quiet_wait
                or self.noise_spent + waited > s.noise_budget
            ):
                self.noise_spent += max(0.0, waited - 0.2)
                return busy

    def until_quiet(
        self,
        what: str,
        measure: Callable[[], T],
        other: Callable[[T], float],
        idle: Callable[[float], object] = time.sleep,
        retries: int | None = None,
    ) -> tuple[T, int, float]:
        """``measure()`` after :meth:`wait_quiet`, again (bounded) while ``other(result)``
        cores of CPU went to neither server nor client; the result, attempts, idle busy."""
        s = self.settings
        attempts = 0
        while True:
            attempts += 1
            idle_busy = self.wait_quiet(idle)
            started = time.monotonic()
            result = measure()
            disturbed = other(result)
            limit = s.retries if retries is None else retries
            if disturbed <= s.max_other or attempts > limit or self.noise_spent >= s.noise_budget:
                return result, attempts, idle_busy
            self.noise_spent += time.monotonic() - started
            self.log(f"  {what}: disturbed ({disturbed:.2f} cores of other CPU use); again")


@attrs.frozen
class Option:
    """One command-line option; ``--no-X`` (no ``type``) sets the setting ``X`` to False."""

    flag: str
    help: str
    type: Callable[[str], Any] | None = None


def comma_list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def parse(
    argv: list[str] | None,
    prog: str,
    description: str,
    settings: type[T],
    quick: dict[str, Any],
    options: list[Option],
) -> tuple[T, argparse.Namespace, str]:
    """The settings (``--quick`` first, then each option given), the parsed arguments and
    the command line as it will be recorded."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--quick", action="store_true", help="a short smoke-check run")
    options = [*options, Option("--no-pin", "do not pin server and client CPUs")]
    for option in options:
        if option.type is None:
            parser.add_argument(option.flag, action="store_true", help=option.help)
        else:
            parser.add_argument(option.flag, type=option.type, help=option.help)
    args = parser.parse_args(argv)
    config = settings(**quick) if args.quick else settings()
    for option in options:
        name = option.flag[2:].replace("-", "_")
        value = getattr(args, name)
        if option.type is None:
            name, value = name.removeprefix("no_"), not value
        if hasattr(config, name) and value is not None:
            setattr(config, name, value)
    given = sys.argv[1:] if argv is None else argv
    return config, args, shlex.join([*prog.split(), *given])


def run(
    harness: Harness,
    command: str,
    body: Callable[[], dict[str, Any]],
    render: Callable[[dict[str, Any]], str],
    json_output: Path,
) -> dict[str, Any]:
    """Run ``body()`` pinned, with the run's facts around it; write the Markdown and the JSON."""
    started = dt.datetime.now(dt.timezone.utc)
    revision = git_revision()
    harness.log(f"{command}: server CPU {harness.server_cpus}, client CPU {harness.client_cpus}")
    pin(0, harness.client_cpus)
    nofile = raise_fd_limit()
    t0 = time.perf_counter()
    data: dict[str, Any] = {
        "command": command,
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "revision": revision,
        "machine": machine_facts(),
        "load_before": os.getloadavg(),
        "client_nofile": nofile,
        "server_cpus": sorted(harness.server_cpus) if harness.server_cpus else None,
        "client_cpus": sorted(harness.client_cpus) if harness.client_cpus else None,
        "config": harness.settings,
    }
    data.update(body())
    data["wall_seconds"] = time.perf_counter() - t0
    data["noise_seconds"] = harness.noise_spent
    if git_revision() != revision:
        harness.notes.append(
            f"aiohttp_spry changed during the run ({revision} at the start, {git_revision()} at "
            "the end): rounds may have measured different code"
        )
    data["problems"], data["notes"] = harness.problems, harness.notes
    output: Path = data["config"].output
    old = output.read_text() if output.exists() else ""
    output.write_text(kept_sections(old, render(data)))
    json_output.write_text(json.dumps(data, indent=1, default=_plain))
    harness.log(f"wrote {output} and {json_output} in {data['wall_seconds']:.0f} s")
    for problem in harness.problems:
        harness.log(f"PROBLEM: {problem}")
    if harness.problems:
        harness.log(f"server logs kept in {harness.workdir}")
    else:
        shutil.rmtree(harness.workdir, ignore_errors=True)
    return data


def _plain(value: object) -> object:
    if attrs.has(type(value)):
        return attrs.asdict(value)  # type: ignore[arg-type]
    return str(value)


def printer(line: str) -> None:
    print(line, flush=True)
