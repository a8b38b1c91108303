"""The lab: real nodes that behave like fresh servers."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ssh_run

import jexida_lab as lab
from mcp_bridge import execution

pytestmark = pytest.mark.integration


def test_each_node_answers_ssh_on_its_own_address(test_lab: lab.LabStatus) -> None:
    addresses = [node.address for node in test_lab.nodes]
    assert len(set(addresses)) == 3
    for node in test_lab.nodes:
        assert node.address.startswith("127.")
        proc = ssh_run(test_lab, node, "hostname")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == node.name


def test_nodes_are_separate_machines(test_lab: lab.LabStatus) -> None:
    first, second = test_lab.nodes[0], test_lab.nodes[1]
    marker = f"/root/written-on-{first.name}"
    assert ssh_run(test_lab, first, f"touch {marker} && test -f {marker}").returncode == 0
    assert ssh_run(test_lab, second, f"test -e {marker}").returncode == 1
    # Each node has its own network namespace: different interface addresses inside.
    inside = {ssh_run(test_lab, n, "hostname -I").stdout
              for n in test_lab.nodes[:2]}
    assert len(inside) == 2


def test_nodes_look_like_fresh_servers(test_lab: lab.LabStatus) -> None:
    node = test_lab.nodes[0]
    proc = ssh_run(test_lab, node, "id jexida; sshd -T | grep -Ei '^(permitrootlogin|passwordauthentication) '")
    assert "no such user" in proc.stderr
    assert re.search(r"permitrootlogin (without-password|prohibit-password)", proc.stdout)
    assert "passwordauthentication no" in proc.stdout
    # A key the lab did not make is refused.
    other_key = Path(test_lab.state_dir) / "stranger_ed25519"
    if not other_key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other_key)], check=True)
    assert ssh_run(test_lab, node, "true", key=str(other_key)).returncode == 255


def test_lab_inventory_works_with_ansible_runner(test_lab: lab.LabStatus) -> None:
    inventory = yaml.safe_load(Path(test_lab.inventory).read_text())
    hosts = inventory["all"]["children"]["lab_pytest"]["hosts"]
    assert sorted(hosts) == [node.name for node in test_lab.nodes]
    outcome = execution.run_module(inventory=test_lab.inventory, host_pattern="all",
                                   module="ansible.builtin.ping")
    assert {h: r.status for h, r in outcome.hosts.items()} == {n.name: "succeeded" for n in test_lab.nodes}


def test_up_twice_keeps_the_same_nodes(test_lab: lab.LabStatus) -> None:
    before = lab.podman("ps", "--filter", f"label={lab.LABEL_LAB}=pytest", "--format", "{{.ID}} {{.Names}}")
    again = lab.up("pytest", nodes=3)
    after = lab.podman("ps", "--filter", f"label={lab.LABEL_LAB}=pytest", "--format", "{{.ID}} {{.Names}}")
    assert sorted(before.split("\n")) == sorted(after.split("\n"))
    assert [n.address for n in again.nodes] == [n.address for n in test_lab.nodes]


def test_killed_node_is_reported_down_and_down_removes_only_that_lab(test_lab: lab.LabStatus) -> None:
    side = lab.up("pytest-side", nodes=2)
    assert side.all_up
    assert not {n.address for n in side.nodes} & {n.address for n in test_lab.nodes}
    try:
        lab.podman("kill", side.nodes[1].container)
        reported = {n.name: n.up for n in lab.status("pytest-side").nodes}
        assert reported == {side.nodes[0].name: True, side.nodes[1].name: False}
        # The CLI says so too, with a non-zero exit.
        cli = subprocess.run([sys.executable, "-m", "mcp_bridge.cli", "lab", "status", "--name",
                              "pytest-side", "--json"], capture_output=True, text=True, check=False)
        assert cli.returncode == 1
        assert [n["up"] for n in json.loads(cli.stdout)["nodes"]] == [True, False]
    finally:
        removed = lab.down("pytest-side")
    assert len(removed) == 2
    assert lab.status("pytest-side").nodes == []
    assert lab.status("pytest").all_up  # the other lab is untouched


def test_cli_lab_up_and_status(test_lab: lab.LabStatus) -> None:
    proc = subprocess.run([sys.executable, "-m", "mcp_bridge.cli", "lab", "up", "--name", "pytest",
                           "--nodes", "3"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    for node in test_lab.nodes:
        assert node.name in proc.stdout and "up" in proc.stdout
