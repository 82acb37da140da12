"""MkDocs hook: render the docstrings' Sphinx roles (:class:`~a.B`) as plain code.

The docstrings keep Sphinx's roles and ``Example::`` blocks (they read well in
an editor and in ``help()``); mkdocstrings' Google-style parser leaves them as
``:class:`` text before the code and a trailing ``::``. This drops the role
(with ``~``, keeping the last name only) and turns ``::`` into ``:``.
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


LITERAL_BLOCK = re.compile(r"::</p>")


def on_page_content(html: str, **kwargs: Any) -> str:
    return LITERAL_BLOCK.sub(":</p>", ROLE.sub(_plain, html))
