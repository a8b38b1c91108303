"""The `jexida` CLI against bootstrapped lab nodes: each subcommand, tables, --json and exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import WorkerLab, write_jexida_config
from mcp_client import bridge_env

import jexida_lab as lab
from mcp_bridge.paths import state_dir

pytestmark = pytest.mark.integration


def jexida(*argv: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(sys.executable).parent / "jexida"), *argv], capture_output=True, text=True,
                          timeout=timeout, env=bridge_env(), check=False)


@pytest.fixture
def config(worker_lab: WorkerLab, tmp_path: Path) -> Path:
    registry = tmp_path / "nodes.yml"
    shutil.copy(worker_lab.registry, registry)  # add/remove below must not touch the shared registry
    return write_jexida_config(tmp_path / "cli.jexida.yml", registry)


def test_run_exit_code_is_the_commands_rc(worker_lab: WorkerLab, config: Path) -> None:
    ok = jexida("run", "hostname", "--tags", "gpu", "--inventory", str(config))
    assert ok.returncode == 0 and ok.stdout.strip() == worker_lab.nodes[0].name
    assert "routing:" in ok.stderr
    failed = jexida("run", "exit 5", "--node", worker_lab.nodes[1].name, "--inventory", str(config))
    assert failed.returncode == 5 and "failed on" in failed.stderr
    rejected = jexida("run", "mkfs.ext4 /dev/sda1", "--inventory", str(config), "--json")
    assert rejected.returncode == 126
    assert json.loads(rejected.stdout)["status"] == "rejected"
    nowhere = jexida("run", "true", "--tags", "tpu", "--inventory", str(config))
    assert nowhere.returncode == 125 and "tpu" in nowhere.stderr
    unknown = jexida("run", "true", "--node", "nope", "--inventory", str(config))
    assert unknown.returncode == 3 and "unknown node 'nope'" in unknown.stderr


def test_broadcast_and_status(worker_lab: WorkerLab, config: Path) -> None:
    out = jexida("broadcast", "tag_docker", "hostname", "--inventory", str(config), "--json")
    assert out.returncode == 0, out.stderr
    assert sorted(json.loads(out.stdout)["matched"]) == sorted(n.name for n in worker_lab.nodes[:2])
    table = jexida("status", "--inventory", str(config))
    assert table.returncode == 0
    assert "3 node(s): 3 available" in table.stdout
    for node in worker_lab.nodes:
        assert node.name in table.stdout


def test_nodes_subcommands(worker_lab: WorkerLab, config: Path) -> None:
    listing = jexida("nodes", "list", "--tag", "docker", "--inventory", str(config), "--json")
    assert sorted(n["name"] for n in json.loads(listing.stdout)) == sorted(n.name for n in worker_lab.nodes[:2])
    shown = jexida("nodes", "show", worker_lab.nodes[0].name, "--inventory", str(config))
    assert json.loads(shown.stdout)["tags"] == ["gpu", "docker"]
    check = jexida("nodes", "check", worker_lab.nodes[0].name, "--detailed", "--inventory", str(config))
    assert check.returncode == 0 and "reachable" in check.stdout and "job dirs writable" in check.stdout

    added = jexida("nodes", "add", "laptop1", "127.0.0.99", "--tags", "mac,arm", "--inactive",
                   "--inventory", str(config))
    assert added.returncode == 0 and "laptop1: added" in added.stdout
    again = jexida("nodes", "add", "laptop1", "127.0.0.99", "--tags", "mac,arm", "--inactive",
                   "--inventory", str(config))
    assert "laptop1: unchanged" in again.stdout
    registry = yaml.safe_load((config.parent / "nodes.yml").read_text())
    assert [n["name"] for n in registry["nodes"]].count("laptop1") == 1
    everything = jexida("nodes", "list", "--all", "--inventory", str(config), "--json")
    laptop = next(n for n in json.loads(everything.stdout) if n["name"] == "laptop1")
    assert laptop["health"] == "inactive" and laptop["tags"] == ["mac", "arm"]
    bad_name = jexida("nodes", "add", "bad node", "127.0.0.98", "--inventory", str(config))
    assert bad_name.returncode == 3 and "'name' must be" in bad_name.stderr
    bad_port = jexida("nodes", "add", "node9", "127.0.0.98", "--port", "99999", "--inventory", str(config))
    assert bad_port.returncode == 3 and "'port'" in bad_port.stderr
    removed = jexida("nodes", "remove", "laptop1", "--inventory", str(config))
    assert removed.returncode == 0
    assert "laptop1" not in (config.parent / "nodes.yml").read_text()
    missing = jexida("nodes", "remove", "laptop1", "--inventory", str(config))
    assert missing.returncode == 3 and "no node 'laptop1'" in missing.stderr


def test_provision_a_fresh_node_dry_run_then_apply(tmp_path: Path) -> None:
    """A fresh server whose root trusts the controller key (as cloud-init would set up) becomes a worker."""
    from conftest import controller_key

    fresh = lab.up("pytest-provision", nodes=1)
    node = fresh.nodes[0]
    try:
        pub = Path(controller_key() + ".pub").read_text().strip()
        lab.podman("exec", node.container, "sh", "-c", f"echo '{pub}' >> /root/.ssh/authorized_keys")
        # A new server at an address an earlier lab used: forget that server's key, as a person would
        # (`accept-new` trusts a first key, never a changed one).
        subprocess.run(["ssh-keygen", "-R", node.address, "-f", str(state_dir() / "known_hosts")],
                       capture_output=True, check=False)
        registry = tmp_path / "nodes.yml"
        config = write_jexida_config(tmp_path / "prov.jexida.yml", registry)
        added = jexida("nodes", "add", node.name, node.address, "--user", "root", "--tags", "fresh",
                       "--inventory", str(config))
        assert added.returncode == 0, added.stderr
        dry = jexida("provision", node.name, "--inventory", str(config), "--json", timeout=600)
        dry_result = json.loads(dry.stdout)
        assert dry.returncode == 0, dry.stdout[-2000:]
        assert dry_result["dry_run"] is True and any(t["status"] == "changed" for t in dry_result["tasks"])
        assert yaml.safe_load(registry.read_text())["nodes"][0]["user"] == "root"  # dry run registers nothing
        applied = jexida("provision", node.name, "--apply", "--inventory", str(config), timeout=600)
        assert applied.returncode == 0, applied.stdout[-3000:]
        entry = yaml.safe_load(registry.read_text())["nodes"][0]
        assert entry["user"] == "jexida" and entry["tags"] == ["fresh"]
        ran = jexida("run", "id -un", "--node", node.name, "--inventory", str(config))
        assert ran.returncode == 0 and ran.stdout.strip() == "jexida"
    finally:
        lab.down("pytest-provision")
