"""Two things pyproject.toml cannot say: the version comes from galaxy.yml (its one home), and
this file, which sits at the root of the collection, is not part of it."""

import re
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

GALAXY = Path(__file__).with_name("galaxy.yml").read_text()
VERSION = re.search(r"^version:\s*['\"]?([^'\"\s]+)", GALAXY, re.MULTILINE)
if VERSION is None:
    raise SystemExit("galaxy.yml has no version: line")
COLLECTION = "ansible_collections.jexida.cluster"


class BuildPy(build_py):
    def find_package_modules(self, package, package_dir):  # type: ignore[no-untyped-def]
        modules = super().find_package_modules(package, package_dir)
        return [m for m in modules if not (package == COLLECTION and m[1] == "setup")]


setup(version=VERSION.group(1), cmdclass={"build_py": BuildPy})
