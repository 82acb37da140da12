"""Moved to :mod:`tests.support.redisproc`; kept only while ``bench/`` still imports it here.

Delete once bench/ (being rewritten on its own branch) imports ``tests.support``.
"""

from __future__ import annotations

from tests.support.redisproc import RedisProcess, redis_server_path

__all__ = ["RedisProcess", "redis_server_path"]
