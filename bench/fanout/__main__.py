"""``python -m bench.fanout [--quick]``: writes bench/RESULTS-fanout.md."""

from bench.fanout.run import main

raise SystemExit(main())
