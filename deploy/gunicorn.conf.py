"""gunicorn settings for an aiohttp_spry application (README "Deploying").

    gunicorn -c deploy/gunicorn.conf.py example_app.main:create_app \
        --bind 127.0.0.1:4000 --workers 2

Command-line options override these. For uvloop:
``--worker-class aiohttp.GunicornUVLoopWebWorker`` (``pip install 'aiohttp_spry[uvloop]'``).
With ``PROMETHEUS_MULTIPROC_DIR`` set (metrics from every worker, added up), the
directory is emptied when gunicorn starts and a dead worker's live gauges are
removed, as prometheus_client's multiprocess mode requires.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

worker_class = "aiohttp.GunicornWebWorker"
# aiohttp's keep-alive timer is also its only bound on a client that sends its
# request slowly or not at all. The example sets it on the application
# (SPRY_KEEPALIVE_TIMEOUT, 15 s), which wins over this; an application that does
# not gets this.
keepalive = 15
# Sessions get 1001 in on_shutdown, within Spry(shutdown_timeout=3); this is the
# ceiling for the whole worker.
graceful_timeout = 10


def _multiproc_dir() -> Path | None:
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(path) if path else None


def on_starting(server: Any) -> None:
    directory = _multiproc_dir()
    if directory is None:
        return
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):  # a previous run's figures
        stale.unlink()


def child_exit(server: Any, worker: Any) -> None:
    if _multiproc_dir() is None:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
