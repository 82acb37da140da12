"""MkDocs hook: render the docstrings' Sphinx roles (:class:`~a.B`) as plain code.

The docstrings keep Sphinx's roles (they read well in an editor and in
``help()``); mkdocstrings' Google-style parser leaves them as ``:class:`` text
before the code. This drops the role, and with ``~`` keeps the last name only.
"""

from __future__ import annotations

import re
from typing import Any

ROLE = re.compile(r":(?:class|meth|func|mod|attr|data|exc|obj):<code>(~?)([^<]+)</code>")


def _plain(match: re.Match[str]) -> str:
    short, target = match.group(1), match.group(2)
    label = target.split(" <")[0]  # :class:`text <target>`
    if short:
        label = label.rsplit(".", 1)[-1]
    return f"<code>{label}</code>"


def on_page_content(html: str, **kwargs: Any) -> str:
    return ROLE.sub(_plain, html)
