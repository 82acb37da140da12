"""``python -m bench.scale [--quick]``: bench/RESULTS-scale.md and its RESULTS.md part."""

from bench.scale.run import main

raise SystemExit(main())
