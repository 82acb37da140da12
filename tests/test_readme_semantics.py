"""The README's semantics table for topics with history: each row names an existing test."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def test_every_row_of_the_history_semantics_table_names_existing_tests() -> None:
    text = README.read_text()
    table = text.split("**Delivery semantics, topics with history.**", 1)[1]
    table = table.split("**Delivery semantics, topics without history**", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    sources = "\n".join(p.read_text() for p in ROOT.glob("tests/**/*.py"))
    assert len(rows) >= 12, rows
    for row in rows[1:]:  # the header names no test
        names = re.findall(r"`(test_[a-z0-9_]+)`", row)
        assert names, f"a row without a test: {row}"
        for name in names:
            assert re.search(rf"def {name}\(", sources), f"{name} (README) is not a test"


def test_every_row_of_the_cluster_table_names_existing_tests() -> None:
    text = README.read_text()
    table = text.split("### A Redis Cluster", 1)[1].split("Run the cluster with", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    sources = "\n".join(p.read_text() for p in ROOT.glob("tests/**/*.py"))
    assert len(rows) >= 6, rows
    for row in rows[1:]:
        names = re.findall(r"`(test_[a-z0-9_]+)(?:\[cluster\])?`", row)
        assert names, f"a row without a test: {row}"
        for name in names:
            assert re.search(rf"def {name}\(", sources), f"{name} (README) is not a test"
