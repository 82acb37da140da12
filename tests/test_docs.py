"""Every code example in docs/ runs, and so does every ``>>>`` example in the docstrings.

A page's ``python`` blocks run in order in one namespace, like a notebook
(top-level ``await`` allowed; ``__name__`` is not ``"__main__"``, so
``web.run_app`` under a main guard does not start). The ``test_*`` functions a
block defines run right after it, with ``aiohttp_client``; a page that defines
none but builds an ``app`` has it started and stopped. Getting
started is also followed for real: its ``app.py`` and ``client.py`` run as
processes and print what the page says they print.
"""

from __future__ import annotations

import ast
import doctest
import importlib
import inspect
import json
import logging
import pkgutil
import re
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from aiohttp import web

import aiohttp_spry
from example_app.main import create_app, create_file_routes_app
from tests.support.procs import HOST, REPO_ROOT, free_port, spawn_listening, stop_process

DOCS = REPO_ROOT / "docs"
FENCE = re.compile(r"^([ \t]*)```([\w-]*)([^\n]*)\n(.*?)^\1```[ \t]*$", re.DOTALL | re.MULTILINE)
#: Fences that are not Python (shell commands, output, data): shown, not run.
NOT_CODE = {"sh", "text", "json", "ini", "nginx", "toml", "yaml"}


class Block(NamedTuple):
    lang: str
    title: str | None
    code: str
    line: int


def blocks(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        title = re.search(r'title="([^"]+)"', match.group(3))
        line = text.count("\n", 0, match.start()) + 2
        code = textwrap.dedent(match.group(4))  # a fence inside a list item is indented
        found.append(Block(match.group(2), title and title.group(1), code, line))
    return found


def pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def python_pages() -> list[Path]:
    return [page for page in pages() if any(b.lang == "python" for b in blocks(page))]


def page_id(page: Path) -> str:
    return str(page.relative_to(DOCS))


def test_every_fence_is_python_or_plainly_not_code() -> None:
    # A ```py or unlabelled fence would be skipped silently: refuse it.
    for page in pages():
        for block in blocks(page):
            assert block.lang == "python" or block.lang in NOT_CODE, (
                f"{page_id(page)}:{block.line}: fence {block.lang!r}: label Python "
                f"examples 'python' (they run) and others one of {sorted(NOT_CODE)}"
            )
    assert len(python_pages()) >= 12  # the guides are not silently emptied


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """A page may configure logging (the Logging guide does): undo it for the next tests."""
    manager = logging.Logger.manager
    levels = {
        name: logger.level
        for name, logger in manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for name, logger in list(manager.loggerDict.items()):
        if isinstance(logger, logging.Logger):
            logger.setLevel(levels.get(name, logging.NOTSET))
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("page", python_pages(), ids=page_id)
@pytest.mark.usefixtures("restore_logging")
async def test_docs_python_examples_run(page: Path, aiohttp_client: Any, tmp_path: Path) -> None:
    namespace: dict[str, Any] = {"__name__": f"docs_{page.stem.replace('-', '_')}"}
    fixtures = {"aiohttp_client": aiohttp_client, "tmp_path": tmp_path}
    ran = 0
    for block in blocks(page):
        if block.lang != "python":
            continue
        before = dict(namespace)
        code = compile(
            block.code,
            f"{page_id(page)}:{block.line}",
            "exec",
            flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
            dont_inherit=True,
        )
        result = eval(code, namespace)  # exec, but returns the coroutine of a top-level await
        if inspect.iscoroutine(result):
            await result
        # The block's own tests run where they stand, against the block's own app.
        for name, test in list(namespace.items()):
            if name.startswith("test_") and callable(test) and before.get(name) is not test:
                wanted = inspect.signature(test).parameters
                outcome = test(**{arg: fixtures[arg] for arg in wanted})
                if inspect.iscoroutine(outcome):
                    await outcome
                ran += 1
    app = namespace.get("app")
    if not ran and isinstance(app, web.Application):
        client = await aiohttp_client(app)  # it starts: routes register, startup hooks run
        await client.close()


def titled(page: str, title: str) -> str:
    (block,) = [b for b in blocks(DOCS / page) if b.title == title]
    return block.code


def output_after(page: str, command: str) -> str:
    """The ``text`` block that follows the ``sh`` block running ``command``."""
    found = blocks(DOCS / page)
    for i, block in enumerate(found):
        if block.lang == "sh" and block.code.strip() == command:
            assert found[i + 1].lang in {"text", "json"}, found[i + 1]
            return found[i + 1].code
    raise AssertionError(f"{page} has no sh block {command!r}")


@pytest.mark.timeout(90)
def test_getting_started_runs_as_written(tmp_path: Path) -> None:
    port = free_port()
    app_py = titled("getting-started.md", "app.py")
    assert "port=4000" in app_py
    (tmp_path / "app.py").write_text(app_py.replace("port=4000", f"port={port}"))
    (tmp_path / "client.py").write_text(titled("getting-started.md", "client.py"))
    log = tmp_path / "server.log"
    server = spawn_listening([sys.executable, "app.py"], port, log, cwd=tmp_path)
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/chat", timeout=10) as response:
            fallback = json.load(response)
        shown = json.loads(output_after("getting-started.md", "curl -s http://127.0.0.1:4000/chat"))
        assert fallback["message"] == shown["message"]
        assert fallback["hint"] == shown["hint"].replace("4000", str(port))

        client = subprocess.run(
            [sys.executable, "client.py", f"ws://{HOST}:{port}/chat"],
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert client.returncode == 0, (client.stdout, client.stderr)
        assert client.stdout == output_after("getting-started.md", ".venv/bin/python client.py")
    finally:
        stop_process(server)
    server_log = log.read_text()
    assert "INFO echo: connected (subprotocol spry-chat-v1)" in server_log, server_log
    assert "INFO echo: client closed with 1000" in server_log, server_log
    assert "Traceback" not in server_log, server_log


def modules() -> Iterator[str]:
    yield aiohttp_spry.__name__
    for info in pkgutil.walk_packages(aiohttp_spry.__path__, f"{aiohttp_spry.__name__}."):
        yield info.name


def test_docstring_examples_pass_under_doctest() -> None:
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    examples = 0
    for name in modules():
        module = importlib.import_module(name)
        for test in finder.find(module, name):
            examples += len(test.examples)
            runner.run(test)
    results = runner.summarize(verbose=False)
    assert results.failed == 0, f"{results.failed} of {results.attempted} docstring examples failed"
    assert examples >= 15, f"only {examples} docstring examples found"


def documented_endpoints(table_after: str) -> set[tuple[str, str]]:
    """``(method, path)`` of the first column of the endpoint table after ``table_after``."""
    text = (DOCS / "example.md").read_text(encoding="utf-8")
    table = text[text.index(table_after) :].split("\n\n")[1]
    found = set()
    for row in table.splitlines()[2:]:
        cell = row.split("|")[1]
        for method, path in re.findall(r"`(GET|POST|\*) (/[^`]*)`", cell):
            found.add((method, path))
    return found


async def served_endpoints(factory: Any) -> set[tuple[str, str]]:
    app = await factory()
    served = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or re.sub(r"\{(\w+):.*\}", r"{\1}", info.get("formatter", ""))
        served.add((route.method, path))
    # A GET route answers HEAD too (Spry's rule; the page says so once).
    return {
        (method, path)
        for method, path in served
        if not (method == "HEAD" and ("GET", path) in served)
    }


async def test_the_example_page_documents_every_endpoint_of_both_apps() -> None:
    assert documented_endpoints("The default app") == await served_endpoints(create_app)
    assert documented_endpoints("The file-routes app") == await served_endpoints(
        create_file_routes_app
    )
