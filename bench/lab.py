"""The bench's podman lab: bring it up (after a memory check), bootstrap it, hand out inventories."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

import jexida_lab as lab
from bench.common import base_env, mem_available_mb, sh
from mcp_bridge.paths import state_dir

BENCH_LAB = "bench"
# Measured: 50 nodes took about 120-135 MB of host memory (2.4-2.7 MB each). The check asks for
# twice that per node plus room for Ansible's forks (50 at a time, ~30 MB each) and the bridge.
EXPECTED_MB_PER_NODE = 2.7
HEADROOM_MB = 2048


class LabMemoryError(RuntimeError):
    """The machine has too little free memory for the lab asked for."""


@dataclass
class BenchLab:
    status: lab.LabStatus
    registry: Path
    key: str
    known_hosts: str
    work: Path
    memory_mb_per_node: float

    @property
    def nodes(self) -> list[lab.LabNode]:
        return self.status.nodes

    def ssh_opts(self) -> list[str]:
        return ["-i", self.key, "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes",
                "-o", "BatchMode=yes"]

    def static_inventory(self, count: int) -> Path:
        """A plain YAML inventory (no probing) for the first `count` nodes, as jexida workers."""
        path = self.work / f"static-{count}.yml"
        hosts = {n.name: {"ansible_host": n.address, "ansible_port": n.port} for n in self.nodes[:count]}
        path.write_text(yaml.safe_dump({"all": {"vars": {
            "ansible_user": "jexida", "ansible_ssh_private_key_file": self.key,
            "ansible_ssh_common_args": f"-o UserKnownHostsFile={self.known_hosts} -o StrictHostKeyChecking=yes",
            "ansible_python_interpreter": "/usr/bin/python3"}, "hosts": hosts}}))
        return path

    def jexida_config(self, count: int, **options: Any) -> Path:
        """A jexida inventory config over the first `count` registered nodes."""
        entries = yaml.safe_load(self.registry.read_text())["nodes"]
        names = {n.name for n in self.nodes[:count]}
        registry = self.work / f"nodes-{count}.yml"
        registry.write_text(yaml.safe_dump({"nodes": [e for e in entries if e["name"] in names]}))
        path = self.work / f"n{count}{'-cached' if options.get('cache') else ''}.jexida.yml"
        path.write_text(yaml.safe_dump({"plugin": "jexida.cluster.jexida", "nodes_file": str(registry),
                                        "deadline": 30, **options}))
        return path

    def describe(self) -> str:
        return (f"Lab: {len(self.nodes)} podman nodes (Debian 12, sshd), about {self.memory_mb_per_node:.1f} MB of "
                f"host memory each ({self.memory_mb_per_node * len(self.nodes):.0f} MB for {len(self.nodes)}).")


def check_memory(count: int, available_mb: float | None = None) -> None:
    """Refuse a lab the machine cannot hold, before any container starts."""
    available = mem_available_mb() if available_mb is None else available_mb
    needed = 2 * EXPECTED_MB_PER_NODE * count + HEADROOM_MB
    if available < needed:
        raise LabMemoryError(f"a lab of {count} nodes wants about {needed:.0f} MB free (2 x {EXPECTED_MB_PER_NODE} MB "
                             f"per node + {HEADROOM_MB} MB for Ansible and the bridge); {available:.0f} MB is free")


def bring_up(count: int) -> BenchLab:
    before = mem_available_mb()
    check_memory(count, before)
    print(f"bench: lab of {count} nodes ({before:.0f} MB free before)", flush=True)
    status = lab.up(BENCH_LAB, nodes=count)
    time.sleep(1)
    per_node = max(0.0, before - mem_available_mb()) / count
    work = state_dir() / "bench"
    work.mkdir(parents=True, exist_ok=True)
    registry = work / "nodes.yml"
    print(f"bench: bootstrapping {count} nodes with playbooks/bootstrap.yml", flush=True)
    sh(["ansible-playbook", "-i", status.inventory, "playbooks/bootstrap.yml", "-f", "50",
        "-e", f"jexida_registry={registry}"], env=base_env())
    return BenchLab(status=status, registry=registry, key=str(state_dir() / "controller_ed25519"),
                    known_hosts=str(state_dir() / "known_hosts"), work=work, memory_mb_per_node=per_node)


def bring_down() -> None:
    lab.down(BENCH_LAB)
