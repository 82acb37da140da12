"""Fixtures for the soak suite: the same ``server`` process fixture as ``tests/e2e``."""

from __future__ import annotations

from tests.e2e.conftest import repo_root, server, server_args

__all__ = ["repo_root", "server", "server_args"]
