"""The jexida inventory plugin against bootstrapped lab nodes, through Ansible's own CLIs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import WorkerLab, ansible_cli, as_jexida, write_jexida_config

import jexida_lab as lab

pytestmark = pytest.mark.integration


def graph(lab_config: Path, *extra: str) -> dict[str, set[str]]:
    """`ansible-inventory --graph` as {group: {hosts}}."""
    proc = ansible_cli("ansible-inventory", "-i", str(lab_config), "--graph", *extra)
    assert proc.returncode == 0, proc.stderr
    groups: dict[str, set[str]] = {}
    current = None
    for line in proc.stdout.splitlines():
        group = re.match(r"^[\s|]*\|?--@(\S+):$", line) or re.match(r"^@(\S+):$", line)
        if group:
            current = group.group(1)
            groups.setdefault(current, set())
        elif (host := re.match(r"^[\s|]*\|--(\S+)$", line)) and current:
            groups[current].add(host.group(1))
    return groups


def host_facts(lab_config: Path, *extra: str) -> dict[str, dict]:
    proc = ansible_cli("ansible-inventory", "-i", str(lab_config), "--list", *extra)
    assert proc.returncode == 0, proc.stderr
    hostvars = json.loads(proc.stdout)["_meta"]["hostvars"]

    def plain(value: object) -> object:  # 2.19 marks plugin-set strings as unsafe in --list
        if isinstance(value, dict):
            if set(value) == {"__ansible_unsafe"}:
                return value["__ansible_unsafe"]
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    return {name: plain(hv)["jexida_facts"] for name, hv in hostvars.items()}  # type: ignore[index]



def test_graph_shows_tag_load_and_health_groups(worker_lab: WorkerLab, lab_config: Path) -> None:
    groups = graph(lab_config)
    names = [node.name for node in worker_lab.nodes]
    assert groups["tag_gpu"] == {names[0]}
    assert groups["tag_docker"] == {names[0], names[1]}
    assert groups["available"] == set(names)
    assert groups["os_linux"] == set(names) and groups["arch_x86_64"] == set(names)
    load_groups = [g for g in groups if g.startswith("load_")]
    for name in names:
        assert sum(name in groups[g] for g in load_groups) == 1


def test_facts_are_real(worker_lab: WorkerLab, lab_config: Path) -> None:
    facts = host_facts(lab_config)
    node = worker_lab.nodes[0]
    mine = facts[node.name]
    assert mine["reachable"] is True and mine["error"] is None
    assert mine["address"] == node.address
    assert mine["distribution"].lower() == "debian" and mine["python_version"].startswith("3.")
    assert mine["cpus"] >= 1 and mine["mem_total_mb"] > 0 and mine["disk_free_mb"] > 0


def test_running_job_is_counted(worker_lab: WorkerLab, lab_config: Path) -> None:
    node = worker_lab.nodes[1]
    start = ("mkdir -p /opt/jexida-jobs/inv-test && (nohup sleep 120 >/dev/null 2>&1 & "
             "echo $! > /opt/jexida-jobs/inv-test/pid)")
    proc = as_jexida(worker_lab, node, start)
    assert proc.returncode == 0, proc.stderr
    try:
        facts = host_facts(lab_config)
        assert facts[node.name]["running_jobs"] == 1
        assert facts[worker_lab.nodes[0].name]["running_jobs"] == 0
    finally:
        as_jexida(worker_lab, node, "kill $(cat /opt/jexida-jobs/inv-test/pid); rm -rf /opt/jexida-jobs/inv-test")


def test_pattern_reaches_exactly_the_right_nodes(worker_lab: WorkerLab, lab_config: Path) -> None:
    proc = ansible_cli("ansible", "-i", str(lab_config), "tag_docker:&available", "-m", "ansible.builtin.ping")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    reached = set(re.findall(r"^(\S+) \| SUCCESS", proc.stdout, re.MULTILINE))
    assert reached == {worker_lab.nodes[0].name, worker_lab.nodes[1].name}



@pytest.mark.parametrize("stopped_node", [2], indirect=True)
def test_stopped_node_is_unreachable_and_the_rest_are_probed(
    worker_lab: WorkerLab, lab_config: Path, stopped_node: lab.LabNode
) -> None:
    groups = graph(lab_config)
    assert groups["unreachable"] == {stopped_node.name}
    assert groups["available"] == {worker_lab.nodes[0].name, worker_lab.nodes[1].name}
    facts = host_facts(lab_config)
    assert facts[stopped_node.name]["reachable"] is False
    assert facts[stopped_node.name]["error"]


def test_cache_serves_listings_until_flushed(worker_lab: WorkerLab, tmp_path: Path) -> None:
    cached = write_jexida_config(tmp_path / "cached.jexida.yml", worker_lab.registry, cache=True,
                                 cache_plugin="ansible.builtin.jsonfile", cache_connection=str(tmp_path / "cache"),
                                 cache_timeout=3600)
    node = worker_lab.nodes[1]
    assert host_facts(cached)[node.name]["reachable"] is True
    # Stop sshd on the node: only a listing that really probes can notice.
    lab.podman("exec", node.container, "sh", "-c", "pkill -x sshd; sleep 0.3")
    try:
        assert host_facts(cached)[node.name]["reachable"] is True, "a cached listing must not touch the nodes"
        flushed = host_facts(cached, "--flush-cache")
        assert flushed[node.name]["reachable"] is False
        assert flushed[worker_lab.nodes[0].name]["reachable"] is True
    finally:
        lab.podman("exec", node.container, "/usr/sbin/sshd")
