"""playbooks/bootstrap.yml against fresh lab nodes: one command makes registered, verified workers."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import WORKER_TAGS, WorkerLab, controller_key, run_bootstrap, ssh_run

import jexida_lab as lab
from mcp_bridge.paths import state_dir

pytestmark = pytest.mark.integration


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP lines as {host: {ok: n, changed: n, ...}}."""
    found: dict[str, dict[str, int]] = {}
    for host, counts in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", output, re.MULTILINE):
        found[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counts)}
    return found


def test_unreachable_node_is_reported_and_the_others_complete(worker_lab: WorkerLab) -> None:
    first = worker_lab.first_run
    assert first.returncode != 0, "a node failed, so the run must say so"
    assert re.search(r"ghost-node: unreachable: .*(refused|timed out|No route)", first.stdout), first.stdout[-3000:]
    assert "Not bootstrapped: ['ghost-node']" in first.stdout or "Not bootstrapped: ghost-node" in first.stdout
    for node in worker_lab.nodes:
        assert re.search(rf"{node.name}: worker ready, python 3\.\d+", first.stdout), first.stdout[-3000:]


def test_worker_logs_in_with_the_controller_key(worker_lab: WorkerLab) -> None:
    key = state_dir() / "controller_ed25519"
    known_hosts = state_dir() / "known_hosts"
    assert key.is_file() and (key.stat().st_mode & 0o777) == 0o600
    for node in worker_lab.nodes:
        proc = subprocess.run(
            ["ssh", "-i", str(key), "-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes",
             "-o", "BatchMode=yes", f"jexida@{node.address}",
             "id -un; test -w /opt/jexida-jobs && test -w /var/log/jexida-jobs && echo dirs-ok; python3 --version"],
            capture_output=True, text=True, timeout=30, check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split("\n")[:2] == ["jexida", "dirs-ok"]
    # The admin key is not a worker key: jexida only trusts the controller's.
    refused = ssh_run(worker_lab.status, worker_lab.nodes[0], "true", user="jexida")
    assert refused.returncode == 255


def test_registry_holds_each_node_once(worker_lab: WorkerLab) -> None:
    registry = yaml.safe_load(worker_lab.registry.read_text())
    by_name = {node["name"]: node for node in registry["nodes"]}
    assert sorted(by_name) == sorted(node.name for node in worker_lab.nodes)
    node = by_name[worker_lab.nodes[0].name]
    assert node["host"] == worker_lab.nodes[0].address
    assert node["port"] == 22 and node["user"] == "jexida" and node["active"] is True
    assert node["tags"] == WORKER_TAGS[0]
    assert node["vars"]["ansible_ssh_private_key_file"].endswith("controller_ed25519")


def test_second_run_changes_nothing_and_does_not_duplicate(
    worker_lab: WorkerLab
) -> None:
    second = run_bootstrap(worker_lab.admin_inventory, "--limit", "all:!ghosts",
                           "-e", f"jexida_registry={worker_lab.registry}")
    assert second.returncode == 0, second.stdout[-3000:]
    counts = recap(second.stdout)
    for node in worker_lab.nodes:
        assert counts[node.name]["changed"] == 0, second.stdout[-3000:]
        assert counts[node.name]["failed"] == 0
    registry = yaml.safe_load(worker_lab.registry.read_text())
    assert len(registry["nodes"]) == len(worker_lab.nodes)


def test_retagging_updates_the_entry(worker_lab: WorkerLab) -> None:
    node = worker_lab.nodes[2]
    run = run_bootstrap(worker_lab.status.inventory, "--limit", node.name,
                        "-e", f"jexida_registry={worker_lab.registry}", "-e", "jexida_tags=build")
    assert run.returncode == 0, run.stdout[-3000:]
    registry = yaml.safe_load(worker_lab.registry.read_text())
    tags = {entry["name"]: entry["tags"] for entry in registry["nodes"]}
    assert tags[node.name] == ["build"]
    assert tags[worker_lab.nodes[0].name] == WORKER_TAGS[0]
    assert len(registry["nodes"]) == len(worker_lab.nodes)


def test_wrong_typed_variable_fails_before_any_task(worker_lab: WorkerLab) -> None:
    node = worker_lab.nodes[0]
    run = run_bootstrap(worker_lab.status.inventory, "--limit", node.name,
                        "-e", f"jexida_registry={worker_lab.registry}",
                        "-e", "jexida_worker_job_retention_days=forever")
    assert run.returncode != 0
    assert "jexida_worker_job_retention_days" in run.stdout
    assert "Validating arguments against arg spec" in run.stdout
    assert re.search(rf"{node.name}: failed at 'Validating arguments", run.stdout)
    assert recap(run.stdout)[node.name]["changed"] == 0


def test_controller_itself_is_refused(tmp_path: Path) -> None:
    inventory = tmp_path / "local.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"this-controller": {"ansible_connection": "local"}}}}))
    run = run_bootstrap(inventory, "-e", f"jexida_registry={tmp_path / 'nodes.yml'}")
    assert run.returncode != 0
    assert "uses a local connection: it is this controller" in run.stdout
    assert "jexida_bootstrap_local=true" in run.stdout
    assert not (tmp_path / "nodes.yml").exists()


def test_check_mode_on_a_fresh_node_changes_nothing(tmp_path: Path) -> None:
    fresh = lab.up("pytest-check", nodes=1)
    try:
        run = run_bootstrap(fresh.inventory, "--check", "-e", f"jexida_registry={tmp_path / 'nodes.yml'}")
        assert run.returncode == 0, run.stdout[-3000:]
        assert "checked (check mode: not verified, not registered)" in run.stdout
        assert ssh_run(fresh, fresh.nodes[0], "id jexida").returncode != 0
        assert not (tmp_path / "nodes.yml").exists()
    finally:
        lab.down("pytest-check")


def test_sudo_user_with_become(tmp_path: Path) -> None:
    """Admin access through a sudo user (`-u admin --become`), the way many servers are handed over."""
    fresh = lab.up("pytest-sudo", nodes=1)
    node = fresh.nodes[0]
    try:
        lab.podman("exec", node.container, "sh", "-c",
                   "useradd -m -s /bin/bash admin && mkdir -p /home/admin/.ssh && "
                   "cp /root/.ssh/authorized_keys /home/admin/.ssh/ && chown -R admin: /home/admin/.ssh && "
                   "echo 'admin ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/admin && chmod 0440 /etc/sudoers.d/admin")
        registry = tmp_path / "nodes.yml"
        # -e ansible_user would also override the check that logs in as jexida: refused up front.
        refused = run_bootstrap(fresh.inventory, "-e", "ansible_user=admin", "--become",
                                "-e", f"jexida_registry={registry}")
        assert refused.returncode != 0 and "Set the admin user in the inventory" in refused.stdout
        assert recap(refused.stdout)[node.name]["changed"] == 0
        inventory = yaml.safe_load(Path(fresh.inventory).read_text())
        inventory["all"]["vars"]["ansible_user"] = "admin"
        admin_inventory = tmp_path / "admin.yml"
        admin_inventory.write_text(yaml.safe_dump(inventory))
        run = run_bootstrap(admin_inventory, "--become", "-e", f"jexida_registry={registry}")
        assert run.returncode == 0, run.stdout[-3000:]
        assert f"{node.name}: worker ready" in run.stdout
        assert yaml.safe_load(registry.read_text())["nodes"][0]["user"] == "jexida"
        assert registry.stat().st_uid == os.getuid()
        assert ssh_run(fresh, node, "id -un", user="jexida", key=controller_key()).stdout.strip() == "jexida"
    finally:
        lab.down("pytest-sudo")


def test_a_node_whose_sshd_is_the_containers_main_process_survives_bootstrap(tmp_path: Path) -> None:
    """The role reloads sshd for its drop-in (SIGHUP keeps the PID): a restart would stop this node."""
    status = lab.up("pytest-fgsshd", nodes=1, foreground_sshd=True)
    node = status.nodes[0]
    try:
        main = lab.podman("inspect", "--format", "{{json .Config.Cmd}}", node.container)
        assert "sshd -D" in main, main
        pid_before = lab.podman("exec", node.container, "cat", "/run/sshd.pid").strip()
        played = run_bootstrap(status.inventory, "-e", f"jexida_registry={tmp_path / 'nodes.yml'}")
        assert played.returncode == 0, played.stdout[-3000:]
        assert f"{node.name}: worker ready" in played.stdout
        assert lab.status("pytest-fgsshd").nodes[0].state == "running"
        assert lab.podman("exec", node.container, "cat", "/run/sshd.pid").strip() == pid_before
        effective = lab.podman("exec", node.container, "sshd", "-T", "-C", "user=jexida,host=h,addr=127.0.0.1")
        assert "allowtcpforwarding no" in effective.lower()  # the role's drop-in, for the worker user
        again = run_bootstrap(status.inventory, "-e", f"jexida_registry={tmp_path / 'nodes.yml'}")
        assert again.returncode == 0 and recap(again.stdout)[node.name]["changed"] == 0, again.stdout[-2000:]
    finally:
        lab.down("pytest-fgsshd")
