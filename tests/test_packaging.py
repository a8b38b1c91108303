"""The wheel's package list covers every Python package of the product (a missed one only
shows up after `pip install`, as a ModuleNotFoundError)."""

from __future__ import annotations

import tomllib

from conftest import REPO_ROOT


def test_every_python_package_is_in_the_wheel() -> None:
    listed = set(tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    expected = set()
    for top in ("mcp_bridge", "jexida_lab"):
        for init in (REPO_ROOT / top).rglob("*.py"):
            if "__pycache__" not in init.parts:
                expected.add(".".join(init.parent.relative_to(REPO_ROOT).parts))
    for module in (REPO_ROOT / "plugins").rglob("*.py"):
        parts = module.parent.relative_to(REPO_ROOT).parts
        expected.add(".".join(("ansible_collections", "jexida", "cluster", *parts)))
    assert expected - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"


def test_the_product_never_imports_the_lab() -> None:
    """The bridge, its servers and the CLI work on a controller without podman: they do not import jexida_lab."""
    import subprocess
    import sys

    probe = ("import sys, mcp_bridge.core, mcp_bridge.server, mcp_bridge.web, mcp_bridge.cli, mcp_bridge.userconfig; "
             "print('jexida_lab' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
