"""``raise_open_files_limit``: the soft RLIMIT_NOFILE up to the hard one, said in one log line.

Each case runs in a child Python that sets its own limits first, so this process's
limits are never touched.
"""

from __future__ import annotations

import json
import logging
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.helpers import start_example, stop_example
from tests.support.polling import eventually
from tests.support.procs import HOST, REPO_ROOT, free_port, subprocess_env

SOFT, HARD = resource.getrlimit(resource.RLIMIT_NOFILE)
LOWER = 1024
needs_room = pytest.mark.skipif(
    HARD == resource.RLIM_INFINITY or HARD <= LOWER,
    reason=f"the hard open-files limit ({HARD}) leaves no room below it to lower the soft one",
)

CHILD = """
import json, logging, resource, sys
soft = int(sys.argv[1])
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
from aiohttp_spry import raise_open_files_limit
result = raise_open_files_limit()
print(json.dumps({"result": result, "now": resource.getrlimit(resource.RLIMIT_NOFILE)}))
"""


def run_child(soft: int) -> tuple[dict[str, list[int]], str]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(soft)],
        cwd=REPO_ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout), done.stderr


@needs_room
def test_a_lowered_soft_limit_is_raised_to_the_hard_limit_and_logged() -> None:
    out, log = run_child(LOWER)
    assert out["result"] == [LOWER, HARD]
    assert out["now"] == [HARD, HARD]
    (line,) = log.splitlines()
    assert line == (
        f"INFO aiohttp_spry Open files limit raised from {LOWER} to {HARD} "
        f"(the hard limit is {HARD})"
    )


def test_a_soft_limit_at_the_hard_limit_is_left_and_logged_as_already_there() -> None:
    out, log = run_child(HARD)
    assert out["result"] == [HARD, HARD]
    assert out["now"] == [HARD, HARD]
    (line,) = log.splitlines()
    shown = "unlimited" if HARD == resource.RLIM_INFINITY else str(HARD)
    assert line == (
        f"INFO aiohttp_spry Open files limit already at the hard limit: soft {shown}, hard {shown}"
    )


EXAMPLE = (
    "import resource, runpy, sys; "
    "hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]; "
    f"resource.setrlimit(resource.RLIMIT_NOFILE, ({LOWER}, hard)); "
    "sys.argv[0] = 'example_app'; "
    "runpy.run_module('example_app', run_name='__main__', alter_sys=True)"
)


@needs_room
@pytest.mark.e2e
@pytest.mark.timeout(60)
async def test_the_example_app_raises_the_limit_at_startup_and_logs_it(tmp_path: Path) -> None:
    port = free_port()
    command = [sys.executable, "-c", EXAMPLE, "--host", HOST, "--port", str(port)]
    server = start_example(tmp_path / "server.log", command=command, port=port)
    try:
        expected = f"Open files limit raised from {LOWER} to {HARD} (the hard limit is {HARD})"
        await eventually(lambda: "Serving on http://" in server.log(), timeout=10)
        # Said once, before the server announced where it listens.
        log = server.log()
        assert log.count("Open files limit") == 1
        assert log.index(expected) < log.index("Serving on http://")
        limits = Path(f"/proc/{server.proc.pid}/limits").read_text().splitlines()
        row = next(line for line in limits if line.startswith("Max open files"))
        assert row.split()[3:5] == [str(HARD), str(HARD)]
    finally:
        stop_example(server)


def test_without_the_resource_module_it_changes_nothing_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from aiohttp_spry import raise_open_files_limit

    monkeypatch.setattr(sys, "platform", "win32")
    with caplog.at_level(logging.INFO, logger="aiohttp_spry"):
        assert raise_open_files_limit() == (-1, -1)
    assert [r.getMessage() for r in caplog.records] == [
        "Open files limit: not adjustable on this platform (no resource module)"
    ]
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (SOFT, HARD)
