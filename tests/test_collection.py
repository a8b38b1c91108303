"""The checkout is an Ansible collection: it builds, installs, and resolves from ansible.cfg."""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

from conftest import REPO_ROOT


def _ansible_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env


def test_collection_builds_and_installs(tmp_path: Path) -> None:
    build = subprocess.run(
        ["ansible-galaxy", "collection", "build", "--output-path", str(tmp_path)],
        cwd=REPO_ROOT, capture_output=True, text=True, check=False,
    )
    assert build.returncode == 0, build.stderr
    tarball = tmp_path / "jexida-cluster-0.1.0.tar.gz"
    with tarfile.open(tarball) as tar:
        names = set(tar.getnames())
    assert {"MANIFEST.json", "FILES.json", "meta/runtime.yml"} <= names
    assert not any(n.startswith((".venv", ".cache", "tests/", "mcp_bridge/")) for n in names)

    target = tmp_path / "collections"
    env = _ansible_env(ANSIBLE_COLLECTIONS_PATH=str(target))
    install = subprocess.run(
        ["ansible-galaxy", "collection", "install", "-p", str(target), str(tarball)],
        cwd=tmp_path, capture_output=True, text=True, env=env, check=False,
    )
    assert install.returncode == 0, install.stderr
    listed = subprocess.run(
        ["ansible-galaxy", "collection", "list", "jexida.cluster", "-p", str(target)],
        cwd=tmp_path, capture_output=True, text=True, env=env, check=False,
    )
    assert str(target / "ansible_collections") in listed.stdout
    assert (target / "ansible_collections" / "jexida" / "cluster" / "meta" / "runtime.yml").is_file()


def test_checkout_resolves_the_collection_through_ansible_cfg() -> None:
    # No flags and no environment: only the root ansible.cfg tells Ansible where to look.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    listed = subprocess.run(
        ["ansible-galaxy", "collection", "list", "jexida.cluster"],
        cwd=REPO_ROOT, capture_output=True, text=True, env=env, check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert "jexida.cluster" in listed.stdout
