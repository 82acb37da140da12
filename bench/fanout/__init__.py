"""The fan-out benchmark, ``python -m bench.fanout``: see bench/README.md."""
