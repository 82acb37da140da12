"""``python -m bench [--quick]``: run every figure and write bench/RESULTS.md."""

from bench.run import main

raise SystemExit(main())
