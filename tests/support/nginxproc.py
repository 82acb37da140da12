"""A real ``nginx`` (Debian package ``nginx``) in front of an application, for tests.

It runs from a temporary prefix with ``deploy/nginx/aiohttp_spry.conf.template``
rendered the way the official nginx image renders templates (envsubst of the
named variables only) and included in a minimal ``http { }``; stopped by PID.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from .procs import HOST, REPO_ROOT, free_port, log_tail, stop_process, wait_listening

__all__ = ["TEMPLATE", "TEMPLATE_VARIABLES", "NginxProcess", "nginx_path", "render_template"]

TEMPLATE = REPO_ROOT / "deploy" / "nginx" / "aiohttp_spry.conf.template"
#: The variables the template takes, as the image's envsubst sees them.
TEMPLATE_VARIABLES = ("NGINX_PORT", "SPRY_UPSTREAM")
START_TIMEOUT = 10.0


def nginx_path() -> str | None:
    """The ``nginx`` executable, or ``None`` (Debian installs it in /usr/sbin)."""
    debian = Path("/usr/sbin/nginx")
    return shutil.which("nginx") or (str(debian) if debian.exists() else None)


def render_template(text: str, values: Mapping[str, str]) -> str:
    """``envsubst '${NGINX_PORT} ${SPRY_UPSTREAM}'``: those names only, nginx's ``$vars`` kept.

    Raises:
        KeyError: a template variable has no value.
    """
    return re.sub(
        r"\$\{(" + "|".join(TEMPLATE_VARIABLES) + r")\}", lambda m: values[m.group(1)], text
    )


class NginxProcess:
    """nginx on a free 127.0.0.1 port proxying to ``upstream`` (``host:port``).

    ``directives`` replaces a directive's value in the rendered template
    (``{"proxy_read_timeout": "2s"}``), for tests that need a short timeout.
    """

    def __init__(
        self, executable: str, upstream: str, directives: Mapping[str, str] | None = None
    ) -> None:
        self.executable = executable
        self.upstream = upstream
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="spry-nginx-"))
        self.error_log = self.dir / "error.log"
        self.access_log = self.dir / "access.log"
        self.output = self.dir / "nginx.out"
        self.proc: subprocess.Popen[bytes] | None = None
        site = render_template(
            TEMPLATE.read_text(), {"NGINX_PORT": f"{HOST}:{self.port}", "SPRY_UPSTREAM": upstream}
        )
        for name, value in (directives or {}).items():
            site, found = re.subn(rf"(?m)^(\s*{name}\s+)[^;]+;", rf"\g<1>{value};", site)
            if not found:
                raise ValueError(f"the template has no {name} directive to replace")
        (self.dir / "aiohttp_spry.conf").write_text(site)
        for temp in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.dir / temp).mkdir()
        (self.dir / "nginx.conf").write_text(
            f"""{"user root;" if os.geteuid() == 0 else ""}
daemon off;
worker_processes 1;
pid {self.dir}/nginx.pid;
error_log {self.error_log} info;
events {{ worker_connections 1024; }}
http {{
    access_log {self.access_log};
    client_body_temp_path {self.dir}/client_body;
    proxy_temp_path {self.dir}/proxy;
    fastcgi_temp_path {self.dir}/fastcgi;
    uwsgi_temp_path {self.dir}/uwsgi;
    scgi_temp_path {self.dir}/scgi;
    include {self.dir}/aiohttp_spry.conf;
}}
"""
        )

    @property
    def site_config(self) -> str:
        """The rendered template, as nginx reads it."""
        return (self.dir / "aiohttp_spry.conf").read_text()

    def start(self) -> NginxProcess:
        """Start nginx and wait until it listens.

        Raises:
            RuntimeError: it exited (a configuration error: the message has its log)
                or did not listen within ``START_TIMEOUT``.
        """
        command = [
            self.executable, "-p", str(self.dir), "-c", str(self.dir / "nginx.conf"),
            "-e", str(self.error_log),
        ]  # fmt: skip
        with self.output.open("wb") as out:
            self.proc = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        try:
            wait_listening(
                self.proc, self.port, timeout=START_TIMEOUT, log_path=self.output, label="nginx"
            )
        except RuntimeError as failed:
            self.stop()
            raise RuntimeError(f"{failed}\nerror.log:\n{log_tail(self.error_log)}") from None
        return self

    def errors(self) -> str:
        return log_tail(self.error_log, 20_000)

    def stop(self) -> None:
        """SIGQUIT (nginx's graceful stop) to the master, by PID; then SIGKILL."""
        if self.proc is not None:
            stop_process(self.proc, signal.SIGQUIT, timeout=10.0)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
