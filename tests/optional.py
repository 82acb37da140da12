"""Moved to :mod:`tests.support.optional`; kept only while ``bench/`` still imports it here.

Delete once bench/ (being rewritten on its own branch) imports ``tests.support``.
"""

from __future__ import annotations

from tests.support.optional import REQUIRE_ENV, require_tool

__all__ = ["REQUIRE_ENV", "require_tool"]
