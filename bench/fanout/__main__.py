"""``python -m bench.fanout [--quick]``: the fan-out benchmarks; writes bench/RESULTS-fanout.md."""

from bench.fanout.run import main

raise SystemExit(main())
