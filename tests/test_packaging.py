"""The release metadata agrees with itself: version, CHANGELOG, LICENSE.

(The built sdist and wheel are checked by ``.ci/check_dist.py`` after
``python -m build`` and ``twine check`` in ``.ci/run``.)
"""

from __future__ import annotations

import configparser
import importlib
import importlib.metadata
import re

import pytest

import aiohttp_spry
from tests.support.procs import REPO_ROOT

KEEP_A_CHANGELOG = ("Added", "Changed", "Deprecated", "Removed", "Fixed", "Security")


def metadata() -> configparser.SectionProxy:
    config = configparser.ConfigParser()
    config.read(REPO_ROOT / "setup.cfg")
    return config["metadata"]


def test_version_comes_from_the_installed_metadata() -> None:
    assert aiohttp_spry.__version__ == importlib.metadata.version("aiohttp_spry")
    assert aiohttp_spry.__version__ == metadata()["version"]


def test_version_falls_back_when_the_distribution_is_not_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def missing(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    try:
        assert importlib.reload(aiohttp_spry).__version__ == "0+unknown"
    finally:
        monkeypatch.undo()
        importlib.reload(aiohttp_spry)
    assert aiohttp_spry.__version__ == metadata()["version"]


def test_changelog_releases_this_version_in_keep_a_changelog_form() -> None:
    text = (REPO_ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    releases = re.findall(r"^## \[([^\]]+)\](.*)$", text, re.MULTILINE)
    assert releases[0] == ("Unreleased", ""), "an [Unreleased] section comes first"
    version, dated = releases[1]
    assert version == metadata()["version"]
    assert re.fullmatch(r" - \d{4}-\d{2}-\d{2}", dated), dated
    for section in re.split(r"^## ", text, flags=re.MULTILINE)[1:]:
        name = section.splitlines()[0]
        headings = re.findall(r"^### (.+)$", section, re.MULTILINE)
        assert set(headings) <= set(KEEP_A_CHANGELOG), (name, headings)
        assert len(headings) == len(set(headings)), f"{name}: a heading twice: {headings}"


def test_license_file_and_spdx_metadata_agree() -> None:
    assert (REPO_ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License\n")
    assert metadata()["license_expression"] == "MIT"
    assert importlib.metadata.metadata("aiohttp_spry")["License-Expression"] == "MIT"
