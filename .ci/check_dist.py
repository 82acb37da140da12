"""Check the built sdist and wheel in DIST (argv[1]): what `twine check` does not.

The sdist carries the library, LICENSE and docs but no tests (they need the
repository: see MANIFEST.in); both carry License-Expression: MIT and the LICENSE
file; the version is the one in setup.cfg.
"""

from __future__ import annotations

import configparser
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path


def main(dist: Path) -> None:
    config = configparser.ConfigParser()
    config.read(Path(__file__).resolve().parent.parent / "setup.cfg")
    version = config["metadata"]["version"]
    (sdist,) = dist.glob(f"aiohttp_spry-{version}.tar.gz")
    (wheel,) = dist.glob(f"aiohttp_spry-{version}-py3-none-any.whl")
    root = f"aiohttp_spry-{version}"
    with tarfile.open(sdist) as tar:
        names = {name.removeprefix(f"{root}/") for name in tar.getnames()}
        pkg_info = tar.extractfile(f"{root}/PKG-INFO")
        assert pkg_info is not None
        sdist_meta = Parser().parsestr(pkg_info.read().decode())
    shipped_tests = sorted(n for n in names if n.split("/")[0] in {"tests", "bench", "example_app"})
    assert not shipped_tests, f"the sdist ships tests it cannot run: {shipped_tests}"
    for required in ("LICENSE", "README.md", "CHANGELOG.md", "aiohttp_spry/py.typed", "mkdocs.yml"):
        assert required in names, f"the sdist lacks {required}"
    assert any(n.startswith("docs/") for n in names), "the sdist lacks docs/"
    with zipfile.ZipFile(wheel) as whl:
        wheel_names = set(whl.namelist())
        wheel_meta = Parser().parsestr(whl.read(f"{root}.dist-info/METADATA").decode())
    assert f"{root}.dist-info/licenses/LICENSE" in wheel_names, "the wheel lacks LICENSE"
    assert "aiohttp_spry/py.typed" in wheel_names, "the wheel lacks py.typed"
    for label, meta in (("sdist", sdist_meta), ("wheel", wheel_meta)):
        assert meta["Version"] == version, (label, meta["Version"], version)
        assert meta["License-Expression"] == "MIT", (label, meta["License-Expression"])
        assert meta["License-File"] == "LICENSE", (label, meta["License-File"])
    print(f"dist ok: {sdist.name} ({len(names)} files), {wheel.name} ({len(wheel_names)} files)")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
