"""The collection stands alone: built, installed with ansible-galaxy, used by FQCN from anywhere.

Only ANSIBLE_COLLECTIONS_PATH points at the installed copy (the Python path scan is off, so
the checkout linked into the venv cannot answer instead), and every command runs from an
unrelated folder with no ansible.cfg.
"""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT

# What a collection tarball may hold: the collection's own parts, nothing of the Python
# package, the tests, the lab or the build. Of tests/ only tests/sanity (ansible-test's ignore
# file) belongs to the collection.
ALLOWED_TOP = {"MANIFEST.json", "FILES.json", "README.md", "CHANGELOG.md", "meta", "plugins", "roles", "playbooks",
               "tests"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, set[str]]:
    work = tmp_path_factory.mktemp("collection")
    build = subprocess.run(["ansible-galaxy", "collection", "build", "--output-path", str(work)],
                           cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert build.returncode == 0, build.stderr
    version = yaml.safe_load((REPO_ROOT / "galaxy.yml").read_text())["version"]
    tarball = work / f"jexida-cluster-{version}.tar.gz"
    with tarfile.open(tarball) as tar:
        names = set(tar.getnames())
    target = work / "collections"
    install = subprocess.run(["ansible-galaxy", "collection", "install", "-p", str(target), str(tarball)],
                             cwd=work, capture_output=True, text=True, check=False, env=standalone_env(target))
    assert install.returncode == 0, install.stderr
    return work, target, names


def standalone_env(target: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_COLLECTIONS_PATH=str(target), ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false",
               ANSIBLE_HOME=os.environ["ANSIBLE_HOME"], ANSIBLE_NOCOLOR="1",
               ANSIBLE_SSH_CONTROL_PATH_DIR=os.environ["ANSIBLE_SSH_CONTROL_PATH_DIR"], **extra)
    if "ANSIBLE_REMOTE_TMP" in os.environ:  # `make test` keeps the controller's remote_tmp in the tests' HOME
        env["ANSIBLE_REMOTE_TMP"] = os.environ["ANSIBLE_REMOTE_TMP"]
    return env


def run(work: Path, target: Path, *argv: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), cwd=work, capture_output=True, text=True, check=False, timeout=300,
                          env=standalone_env(target, **extra))


def test_tarball_holds_only_the_collection(installed: tuple[Path, Path, set[str]]) -> None:
    _, _, names = installed
    top = {name.split("/", 1)[0] for name in names}
    assert top <= ALLOWED_TOP, f"stray files in the tarball: {sorted(top - ALLOWED_TOP)}"
    stray_tests = {n for n in names
                   if n.startswith("tests/") and n != "tests/sanity" and not n.startswith("tests/sanity/")}
    assert not stray_tests, f"pytest files in the tarball: {sorted(stray_tests)}"
    assert "tests/sanity/ignore-2.19.txt" in names
    assert {"MANIFEST.json", "FILES.json", "meta/runtime.yml", "plugins/inventory/jexida.py",
            "plugins/plugin_utils/probe.sh", "roles/jexida_worker/defaults/main.yml",
            "playbooks/bootstrap.yml"} <= names
    assert not any(name.endswith((".lock", ".pyc")) or "__pycache__" in name for name in names)


def test_docs_resolve_from_the_installed_copy_only(installed: tuple[Path, Path, set[str]]) -> None:
    work, target, _ = installed
    where = str(target / "ansible_collections" / "jexida" / "cluster")
    for kind, name in (("inventory", "jexida.cluster.jexida"), ("module", "jexida.cluster.node_registry"),
                       ("module", "jexida.cluster.controller_key"), ("lookup", "jexida.cluster.paths"),
                       ("role", "jexida.cluster.jexida_worker")):
        doc = run(work, target, "ansible-doc", "-t", kind, name)
        assert doc.returncode == 0, f"{kind} {name}: {doc.stderr}"
        assert where in doc.stdout, f"{kind} {name} did not come from {where}: {doc.stdout[:300]}"


def test_plugin_and_module_work_by_fqcn(installed: tuple[Path, Path, set[str]]) -> None:
    work, target, _ = installed
    registry = work / "nodes.yml"
    added = run(work, target, "ansible", "localhost", "-o", "-m", "jexida.cluster.node_registry",
                "-a", f"path={registry} name=gpu1 host=192.0.2.10 tags=gpu")
    assert added.returncode == 0 and "CHANGED" in added.stdout, added.stdout + added.stderr
    config = work / "standalone.jexida.yml"
    config.write_text(yaml.safe_dump({"plugin": "jexida.cluster.jexida", "nodes_file": "nodes.yml", "probe": False}))
    graph = run(work, target, "ansible-inventory", "-i", str(config), "--graph")
    assert graph.returncode == 0, graph.stderr
    assert "@tag_gpu:" in graph.stdout and "gpu1" in graph.stdout


def test_bootstrap_playbook_runs_by_fqcn(installed: tuple[Path, Path, set[str]]) -> None:
    """The playbook, its lookup and its module resolve; on the controller itself it stops, as it should."""
    work, target, _ = installed
    inventory = work / "local.ini"
    inventory.write_text("controller ansible_connection=local\n")
    state = work / "state"
    played = run(work, target, "ansible-playbook", "-i", str(inventory), "jexida.cluster.bootstrap",
                 JEXIDA_HOME=str(state), JEXIDA_CONFIG_DIR=str(work / "config"))
    assert played.returncode != 0  # refusing the controller is a failure of the run
    assert "refused: controller uses a local connection" in played.stdout, played.stdout[-3000:]
    assert (state / "controller_ed25519").is_file() and (state / "controller_ed25519.pub").is_file()
