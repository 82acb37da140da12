"""The files in deploy/: the Grafana dashboard reads exactly the exported names; the nginx
template takes only its two envsubst variables; the example's keep-alive setting."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from aiohttp_spry import Spry
from aiohttp_spry.metrics import METRICS_KEY, enable_metrics
from example_app.main import DEFAULT_KEEPALIVE_TIMEOUT, KEEPALIVE_ENV, keepalive_from_env
from tests.support.nginxproc import TEMPLATE, TEMPLATE_VARIABLES, render_template
from tests.support.optional import require_tool
from tests.support.procs import REPO_ROOT

DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "aiohttp_spry.json"


def exported_names() -> set[str]:
    """The names a scrape shows (counters with their ``_total``)."""
    app = web.Application()
    Spry(app)
    enable_metrics(app, registry=CollectorRegistry())
    names = set()
    for family in app[METRICS_KEY].families():
        names.add(family.name + ("_total" if family.type == "counter" else ""))
    return names


def test_the_grafana_dashboard_reads_every_exported_name_and_no_other() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {name for expr in exprs for name in re.findall(r"aiohttp_spry_[a-z_]+", expr)}
    assert used == exported_names()
    assert all(name.startswith("aiohttp_spry_") for name in used)
    # Counters are only ever rated or increased, never graphed raw.
    for expr in exprs:
        for counter in re.findall(r"aiohttp_spry_[a-z_]+_total", expr):
            assert re.search(rf"(rate|increase)\({counter}", expr), expr
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])


def test_the_nginx_template_takes_only_its_two_variables() -> None:
    text = TEMPLATE.read_text()
    assert set(re.findall(r"\$\{(\w+)\}", text)) == set(TEMPLATE_VARIABLES)
    for directive in ("proxy_read_timeout", "client_header_timeout", "proxy_http_version"):
        assert re.search(rf"(?m)^\s*{directive}\s", text), directive


def test_envsubst_renders_the_template_as_the_tests_do(tmp_path: Path) -> None:
    envsubst = shutil.which("envsubst")
    require_tool("envsubst", envsubst is not None, "apt-get install -y gettext-base")
    assert envsubst is not None
    values = {"NGINX_PORT": "8080", "SPRY_UPSTREAM": "127.0.0.1:4000"}
    rendered = subprocess.run(
        [envsubst, " ".join(f"${{{name}}}" for name in TEMPLATE_VARIABLES)],
        input=TEMPLATE.read_text(),
        capture_output=True,
        text=True,
        env=values,
        check=True,
    ).stdout
    assert rendered == render_template(TEMPLATE.read_text(), values)
    assert "$http_upgrade" in rendered and "listen 8080;" in rendered


def test_the_example_keepalive_defaults_to_15_s_and_is_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(KEEPALIVE_ENV, raising=False)
    assert keepalive_from_env() == DEFAULT_KEEPALIVE_TIMEOUT == 15.0
    monkeypatch.setenv(KEEPALIVE_ENV, "2.5")
    assert keepalive_from_env() == 2.5
    for bad in ("0", "-1", "soon"):
        monkeypatch.setenv(KEEPALIVE_ENV, bad)
        with pytest.raises(ValueError, match="SPRY_KEEPALIVE_TIMEOUT must be a positive number"):
            keepalive_from_env()
