"""Fixtures for the third-party client suite: the real example process, Node's ``ws``, Chromium.

The clients are optional on a developer machine: a missing one skips its tests
with the reason and how to install it. With ``SPRY_REQUIRE_OPTIONAL=1`` (CI
sets it) a missing client fails instead, so CI cannot go green by skipping.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

# The e2e suite's fixtures: ``server`` starts ``python -m example_app`` on a free
# 127.0.0.1 port and stops it by PID afterwards; ``server_args`` feeds it.
from tests.e2e.conftest import server, server_args  # noqa: F401
from tests.support.optional import require_tool

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CLIENTS_DIR = Path(__file__).resolve().parent
CHROMIUM = Path("/usr/bin/chromium")
#: What ``.ci/run`` passes; loopback only, nothing fetched in the background.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",
]
LAUNCH_TIMEOUT_MS = 30_000


@pytest.fixture
def node() -> str:
    """The ``node`` executable, with ``ws`` installed under tests/clients/node_modules."""
    node = shutil.which("node")
    require_tool("node", node is not None, "no `node` on PATH (Node.js 20+ is needed)")
    assert node is not None
    require_tool(
        "Node package ws",
        (CLIENTS_DIR / "node_modules" / "ws" / "package.json").is_file(),
        "run `npm ci --prefix tests/clients`",
    )
    return node


@pytest.fixture(scope="module")
def _chromium_browser() -> Iterator[Browser | str]:
    """One headless Debian Chromium per module, or why there is none."""
    if importlib.util.find_spec("playwright") is None:
        yield "the `playwright` Python package is not installed (pip install -e '.[dev]')"
        return
    if not os.access(CHROMIUM, os.X_OK):
        yield f"{CHROMIUM} not found (apt-get install -y chromium)"
        return
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=LAUNCH_TIMEOUT_MS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def browser(_chromium_browser: Browser | str) -> Browser:
    """Debian's Chromium driven by Playwright (skipped, or failed when required, if missing)."""
    require_tool(
        "Chromium via Playwright",
        not isinstance(_chromium_browser, str),
        str(_chromium_browser),
    )
    assert not isinstance(_chromium_browser, str)
    return _chromium_browser
