"""The fan-out benchmark: ``python -m bench.fanout [--quick]`` from the repository root.

Fan-out throughput (raw aiohttp loop, aiohttp_spry, python-socketio) and latency
through Redis; see :mod:`bench.fanout.run` and the "Fan-out" section of
bench/README.md. Writes bench/RESULTS-fanout.md and bench/results-fanout.json.
"""
