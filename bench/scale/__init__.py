"""``python -m bench.scale``: sessions per process and throughput across processes."""
