"""The report layer of both harnesses: medians, spans, ratios, verdicts and Markdown tables."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from typing import Any


def median(values: Iterable[float]) -> float:
    values = list(values)
    return statistics.median(values) if values else math.nan


def fmt(value: float | None, spec: str = ".3f") -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return format(value, spec)


def span(values: Sequence[float], spec: str = ".3f") -> str:
    return f"{fmt(min(values), spec)}–{fmt(max(values), spec)}" if values else "n/a"


def cell(values: Sequence[float], spec: str = ".3f") -> str:
    """``median (min–max)``, the way every spread over rounds is shown."""
    return f"{fmt(median(values), spec)} ({span(values, spec)})" if values else "not measured"


def ratios(tops: dict[int, float], bottoms: dict[int, float]) -> list[float]:
    """Per-round ``top / bottom`` over the rounds where both were measured."""
    return [tops[r] / bottoms[r] for r in sorted(tops.keys() & bottoms.keys()) if bottoms[r]]


def verdict(values: Sequence[float], ok: Callable[[float], bool]) -> str:
    """Judged on the median; whether every round agreed is said too."""
    if not values:
        return "not measured"
    if ok(median(values)):
        return "**met**" if all(map(ok, values)) else "**met** (median; some rounds below)"
    return "**missed**" if not any(map(ok, values)) else "**missed** (median; some rounds met it)"


def table(header: str, rows: Iterable[str]) -> str:
    """A Markdown table from its header and rows, each written ``a | b | c``."""
    rule = " | ".join(["---"] * (header.count(" | ") + 1))
    return "".join(f"| {line} |\n" for line in [header, rule, *rows])


def preamble(title: str, data: dict[str, Any], pinning: str) -> list[str]:
    """The title and the facts every results file starts with."""
    m = data["machine"]
    if data["server_cpus"] is None:
        pinning = "off (fewer than 2 CPUs, or --no-pin)"
    load = ", ".join(f"{x:.2f}" for x in data["load_before"])
    return [
        f"# {title}\n",
        f"- Command: `{data['command']}` (from the repository root)",
        f"- Date: {data['date']}; wall time {data['wall_seconds'] / 60:.1f} min",
        f"- aiohttp_spry revision: {data['revision']}",
        f"- Machine: {m['nproc']} CPUs ({m['CPU model']}), {m['memory']}, Linux {m['kernel']}; "
        f"load average before the run {load}",
        f"- Pinning: {pinning.format(**data)}",
    ]


def noise_line(
    settings: Any, data: dict[str, Any], what: str, repeated: int, disturbed: int, of: int
) -> str:
    s = settings
    return (
        f"- Noisy neighbours: before each {what} the harness waits (at most {s.quiet_wait:g} s) "
        f"for the machine to be idle (under {s.quiet_below:g} core busy), and measures again "
        f"(up to {s.retries} times) when more than {s.max_other:g} core went to something "
        f"other than the server and the client, within a {s.noise_budget:g} s budget. This "
        f"run: {data['noise_seconds']:.0f} s spent waiting or re-measuring, {repeated} of {of} "
        f"{what}s repeated, {disturbed} still disturbed in the end."
    )


def problems_or(data: dict[str, Any], fine: str) -> list[str]:
    """The Correctness section: the problems, or ``fine``; then the notes."""
    out = ["## Correctness\n"]
    if data["problems"]:
        out.append("**Problems were found; the figures below are suspect:**\n")
        out += [f"- {problem}" for problem in data["problems"]]
    else:
        out.append(fine)
    out.append("")
    out += [f"- Note: {note}" for note in data["notes"]]
    return out


def versions(found: dict[str, str]) -> str:
    return "## Versions\n\n" + table("package | version", [f"{k} | {v}" for k, v in found.items()])


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- begin {name} -->", f"<!-- end {name} -->"


def with_section(text: str, name: str, body: str) -> str:
    """``text`` with the section ``name`` (between its HTML-comment markers) set to ``body``:
    replaced where it is, else appended. One harness can keep its figures in another's file."""
    begin, end = _markers(name)
    block = f"{begin}\n{body.strip()}\n{end}\n"
    start = text.find(begin)
    if start < 0:
        return text.rstrip("\n") + "\n\n" + block
    stop = text.find(end, start)
    stop = len(text) if stop < 0 else stop + len(end) + 1
    return text[:start] + block + text[stop:]


def kept_sections(old: str, new: str) -> str:
    """``new`` plus every marked section of ``old`` that ``new`` lacks (a rewritten results
    file keeps what other harnesses put in it)."""
    pos = 0
    while (start := old.find("<!-- begin ", pos)) >= 0:
        name = old[start + len("<!-- begin ") : old.find(" -->", start)]
        begin, end = _markers(name)
        stop = old.find(end, start)
        if stop < 0:
            break
        if begin not in new:
            new = with_section(new, name, old[start + len(begin) : stop])
        pos = stop + len(end)
    return new
