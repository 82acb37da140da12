"""The servers under test: standalone scripts, ``python -m bench.servers.KIND --port PORT``."""
