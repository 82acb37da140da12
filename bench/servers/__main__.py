"""``python -m bench.servers --kind KIND --port PORT [--gc-stats FILE]``."""

from __future__ import annotations

import argparse
import atexit
import gc
import importlib
import json
import time
from pathlib import Path
from typing import Any

from bench.servers import KINDS


def record_gc(path: Path) -> None:
    """Count the cyclic garbage collector's runs, time and freed objects; write them at exit.

    Only for the GC diagnostic run, never during a timed figure.
    """
    stats: dict[str, list[Any]] = {"runs": [0, 0, 0], "seconds": [0.0] * 3, "collected": [0] * 3}
    started: dict[int, float] = {}

    def callback(phase: str, info: dict[str, int]) -> None:
        generation = info["generation"]
        if phase == "start":
            started[generation] = time.perf_counter()
            return
        stats["runs"][generation] += 1
        stats["seconds"][generation] += time.perf_counter() - started.pop(generation, 0.0)
        stats["collected"][generation] += info["collected"]

    gc.callbacks.append(callback)
    atexit.register(lambda: path.write_text(json.dumps(stats)))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.servers")
    parser.add_argument("--kind", choices=sorted(KINDS), required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--gc-stats", type=Path, help="write cyclic GC statistics here at exit")
    args = parser.parse_args()
    if args.gc_stats is not None:
        record_gc(args.gc_stats)
    module = importlib.import_module(f"bench.servers.{KINDS[args.kind][0]}")
    module.main(args.port)


if __name__ == "__main__":
    main()
