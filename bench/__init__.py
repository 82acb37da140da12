"""Benchmark harness for aiohttp_spry: ``python -m bench`` (see bench/README.md)."""
