"""A lab of real worker nodes: podman containers that behave like fresh servers.

Each node is its own container (its own network namespace) running sshd, published
on its own loopback address (127.0.0.11:22, 127.0.0.12:22, ...). Root logs in with
the lab's admin key only; there is no ``jexida`` user until the role creates it.
With ``hidden=M``, M more nodes sit on a network only node 1 (the bastion) reaches
(see jexida_lab.hidden).
The CLI (``jexida lab``), the pytest fixtures and bench/ all use these functions.

The lab is for trying and testing jexida on one machine: it needs podman and debootstrap.
The product (the bridge, the CLI's other commands) never imports it.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from jexida_lab import hidden as hidden_net
from jexida_lab.image import IMAGE_NAME, NODE_START_SCRIPT, NODE_START_SCRIPT_FOREGROUND, ensure_image, image_ref
from jexida_lab.podman import CONTAINERS_CONF, LabError, podman, podman_env
from mcp_bridge.paths import state_dir

DEFAULT_BASE_ADDRESS = "127.0.0.11"
SSH_PORT = 22
LABEL_LAB = "io.jexida.lab"
LABEL_NODE = "io.jexida.node"
LABEL_ADDRESS = "io.jexida.address"
LABEL_VIA = hidden_net.LABEL_VIA


def jexida_home() -> Path:
    return state_dir()


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (mode 0700) if needed: it holds private keys."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


@dataclass
class LabNode:
    name: str
    container: str
    address: str
    port: int = SSH_PORT
    state: str = "missing"  # podman's state: running, exited, created, ... or missing
    ssh: bool = False  # sshd answered on address:port (for a hidden node: asked from its bastion)
    via: str | None = None  # a hidden node: the bastion node that reaches it

    @property
    def up(self) -> bool:
        return self.state == "running" and self.ssh


@dataclass
class LabStatus:
    name: str
    state_dir: str
    inventory: str
    admin_key: str
    known_hosts: str
    image: str
    nodes: list[LabNode] = field(default_factory=list)

    @property
    def all_up(self) -> bool:
        return bool(self.nodes) and all(node.up for node in self.nodes)

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        for node, raw in zip(self.nodes, data["nodes"], strict=True):
            raw["up"] = node.up
        return data



# --- lab state ----------------------------------------------------------------------------


def validate_lab_name(name: str) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9-]{0,30}", name):
        raise LabError(
            f"bad lab name {name!r}: use lower-case letters, digits and '-', starting with a letter"
        )
    return name


def lab_dir(name: str) -> Path:
    return jexida_home() / "labs" / validate_lab_name(name)


def container_name(lab: str, index: int) -> str:
    return f"jexida-lab-{lab}-node{index}"


def node_name(lab: str, index: int) -> str:
    return f"{lab}-node{index}"


def ensure_admin_key(state: Path) -> Path:
    key = state / "admin_ed25519"
    if not key.exists():
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"jexida-lab-admin@{state.name}",
             "-f", str(key)],
            check=True,
        )
    return key


def _lab_containers(lab: str | None = None) -> list[dict[str, object]]:
    label = f"{LABEL_LAB}={lab}" if lab else LABEL_LAB
    raw = podman("ps", "-a", "--filter", f"label={label}", "--format", "json")
    return json.loads(raw or "[]")


def _ssh_answers(address: str, port: int, timeout: float = 1.0) -> bool:
    """True when an SSH server greets us on address:port."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def _answers(node: LabNode, nodes: Sequence[LabNode]) -> bool:
    """sshd greets: from the host, or for a hidden node from its bastion (the host cannot reach it)."""
    if node.via is None:
        return _ssh_answers(node.address, node.port)
    bastion = next((n for n in nodes if n.name == node.via), None)
    return bastion is not None and hidden_net.answers_via(bastion.container, node.address, node.port)


def _address_in_use(address: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((address, port)) == 0


def _check_loopback(address: str) -> ipaddress.IPv4Address:
    ip = ipaddress.IPv4Address(address)
    if not ip.is_loopback:
        raise LabError(f"lab addresses must be in 127.0.0.0/8, got {address}")
    return ip


def status(name: str = "default") -> LabStatus:
    state = lab_dir(name)
    nodes: list[LabNode] = []
    for container in _lab_containers(name):
        labels = container.get("Labels") or {}
        assert isinstance(labels, dict)
        names = container.get("Names") or []
        assert isinstance(names, list)
        nodes.append(
            LabNode(
                name=str(labels.get(LABEL_NODE, "")),
                container=str(names[0]) if names else "",
                address=str(labels.get(LABEL_ADDRESS, "")),
                state=str(container.get("State", "unknown")).lower(),
                via=str(labels[LABEL_VIA]) if labels.get(LABEL_VIA) else None,
            )
        )
    nodes.sort(key=lambda node: (node.via is not None, ipaddress.IPv4Address(node.address or "0.0.0.0")))
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda n: n.state == "running" and _answers(n, nodes), nodes))
    for node, answered in zip(nodes, answers, strict=True):
        node.ssh = answered
    return LabStatus(
        name=name,
        state_dir=str(state),
        inventory=str(state / "inventory.yml"),
        admin_key=str(state / "admin_ed25519"),
        known_hosts=str(state / "known_hosts"),
        image=image_ref(),
        nodes=nodes,
    )


def _free_addresses(count: int, base: str, taken: set[str]) -> list[str]:
    address = _check_loopback(base)
    chosen: list[str] = []
    while len(chosen) < count:
        candidate = str(address)
        _check_loopback(candidate)
        if candidate not in taken and not _address_in_use(candidate, SSH_PORT):
            chosen.append(candidate)
        address += 1
    return chosen


def _start_node(lab: str, index: int, address: str, image: str, admin_pub: str, foreground_sshd: bool) -> None:
    name = container_name(lab, index)
    podman("rm", "-f", "--ignore", name)
    podman(
        "run", "-d", "--init",
        "--name", name,
        "--hostname", node_name(lab, index),
        "--label", f"{LABEL_LAB}={lab}",
        "--label", f"{LABEL_NODE}={node_name(lab, index)}",
        "--label", f"{LABEL_ADDRESS}={address}",
        "-p", f"{address}:{SSH_PORT}:22",
        "-e", f"JEXIDA_ADMIN_KEY={admin_pub}",
        image, "/bin/sh", "-c", NODE_START_SCRIPT_FOREGROUND if foreground_sshd else NODE_START_SCRIPT,
    )


def _wait_for_ssh(nodes: Sequence[LabNode], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    pending = list(nodes)
    while pending and time.monotonic() < deadline:
        pending = [node for node in pending if not _answers(node, nodes)]
        if pending:
            time.sleep(0.2)
    if pending:
        names = ", ".join(f"{n.name} ({n.address})" for n in pending)
        raise LabError(f"sshd did not answer within {timeout:.0f}s on: {names}; see `podman logs`")


def _host_key_line(node: LabNode) -> str:
    key = podman("exec", node.container, "cat", "/etc/ssh/ssh_host_ed25519_key.pub").split()
    host = node.address if node.port == 22 else f"[{node.address}]:{node.port}"
    return f"{host} {key[0]} {key[1]}"


def write_inventory(lab: LabStatus) -> None:
    """An inventory with the lab's admin access (root + admin key) that Ansible uses as is.

    A hidden node is reached through its bastion (as root, the hop the jexida inventory would
    build) and carries ``jexida_via``, so the bootstrap playbook registers it with ``via``;
    the bastion gets the role's jump option, limited to the hidden nodes' sshd.
    """
    hosts: dict[str, dict[str, object]] = {
        node.name: {"ansible_host": node.address, "ansible_port": node.port} for node in lab.nodes}
    ssh_args = f"-o UserKnownHostsFile={lab.known_hosts} -o StrictHostKeyChecking=yes"
    for node in lab.nodes:
        if node.via and node.via in hosts:
            hosts[node.name].update(jexida_via=node.via,
                                    ansible_ssh_common_args=f"{ssh_args} {_admin_hop(lab, hosts[node.via], ssh_args)}")
            bastion = hosts[node.via]
            bastion["jexida_worker_allow_jump"] = True
            bastion["jexida_worker_jump_permit_open"] = [
                *bastion.get("jexida_worker_jump_permit_open", []), f"{node.address}:{node.port}"]  # type: ignore[list-item]
    inventory = {
        "all": {
            "vars": {
                "ansible_user": "root",
                "ansible_ssh_private_key_file": lab.admin_key,
                "ansible_ssh_common_args": ssh_args,
                "ansible_python_interpreter": "/usr/bin/python3",
            },
            "children": {f"lab_{lab.name.replace('-', '_')}": {"hosts": hosts}},
        }
    }
    _atomic_write(Path(lab.inventory), "# Written by `jexida lab up`: admin access to the lab.\n"
                  + yaml.safe_dump(inventory, sort_keys=False))


def _admin_hop(lab: LabStatus, bastion: dict[str, object], ssh_args: str) -> str:
    # The shared composition (plugin_utils/jump.py), as root with the admin key. ControlPath=none:
    # this file must not depend on the Ansible settings of whoever started the lab.
    from ansible_collections.jexida.cluster.plugins.plugin_utils.jump import jump_args

    return jump_args({"name": "bastion", "host": bastion["ansible_host"], "port": bastion["ansible_port"],
                      "user": "root", "vars": {"ansible_ssh_private_key_file": lab.admin_key,
                                               "ansible_ssh_common_args": f"{ssh_args} -o ControlPath=none"}})


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def up(name: str = "default", nodes: int = 3, base_address: str = DEFAULT_BASE_ADDRESS,
       foreground_sshd: bool = False, hidden: int = 0) -> LabStatus:
    """Make the lab have exactly ``nodes`` running nodes. Running twice changes nothing.

    With ``foreground_sshd`` each node's sshd runs in the foreground as the container's main
    process (PID 1's child), like many Ansible test targets: stopping sshd stops the node.
    With ``hidden``, that many more nodes sit on a network only node 1 reaches (jexida_lab.hidden)."""
    if not 1 <= nodes <= 200:
        raise LabError(f"--nodes must be between 1 and 200, got {nodes}")
    if not 0 <= hidden <= 50:
        raise LabError(f"--hidden must be between 0 and 50, got {hidden}")
    state = ensure_private_dir(lab_dir(name))
    image = ensure_image()
    admin_key = ensure_admin_key(state)
    admin_pub = admin_key.with_suffix(".pub").read_text().strip()

    current = {node.name: node for node in status(name).nodes}
    wanted = {node_name(name, i): i for i in range(1, nodes + 1)}
    hidden_wanted = {hidden_net.hidden_node_name(name, i): i for i in range(1, hidden + 1)}
    # Nodes beyond the wanted count go away; a node whose container stopped is restarted.
    for extra in set(current) - set(wanted) - set(hidden_wanted):
        podman("rm", "-f", current[extra].container)
    taken = {str(c.get("Labels", {}).get(LABEL_ADDRESS)) for c in _lab_containers()}  # type: ignore[union-attr]
    missing = [n for n in wanted if n not in current]
    addresses = iter(_free_addresses(len(missing), base_address, taken))
    for name_, index in wanted.items():
        node = current.get(name_)
        if node is None:
            _start_node(name, index, next(addresses), image, admin_pub, foreground_sshd)
        elif node.state != "running":
            podman("start", node.container)
    if hidden:
        _up_hidden(name, hidden_wanted, current, image, admin_pub)
    else:
        hidden_net.remove_networks(name)  # a lab that had hidden nodes before (its containers went above)
    lab = status(name)
    lab.nodes = [node for node in lab.nodes if node.name in wanted or node.name in hidden_wanted]
    _wait_for_ssh(lab.nodes)
    lines = [_host_key_line(node) for node in lab.nodes]
    _atomic_write(Path(lab.known_hosts), "\n".join(lines) + "\n")
    write_inventory(lab)
    return status(name)


def _up_hidden(name: str, wanted: dict[str, int], current: dict[str, LabNode], image: str, admin_pub: str) -> None:
    network = hidden_net.ensure_network(name)
    bastion = node_name(name, 1)
    hidden_net.connect_bastion(container_name(name, 1), network)
    for node_name_, index in wanted.items():
        node = current.get(node_name_)
        if node is None:
            hidden_net.start_hidden(name, index, network, bastion, image, admin_pub)
        elif node.state != "running":
            podman("start", node.container)
        hidden_net.fence(hidden_net.hidden_container(name, index), network)


def down(name: str = "default") -> list[str]:
    """Remove this lab's containers, networks and state; other labs are left alone."""
    removed = []
    for container in _lab_containers(name):
        names = container.get("Names") or []
        assert isinstance(names, list)
        podman("rm", "-f", "-t", "0", str(names[0]))
        removed.append(str(names[0]))
    hidden_net.remove_networks(name)
    shutil.rmtree(lab_dir(name), ignore_errors=True)
    return removed


def list_labs() -> list[str]:
    labs = set()
    for container in _lab_containers():
        labels = container.get("Labels") or {}
        assert isinstance(labels, dict)
        labs.add(str(labels.get(LABEL_LAB)))
    return sorted(labs)


__all__ = [
    "CONTAINERS_CONF", "DEFAULT_BASE_ADDRESS", "IMAGE_NAME", "LabError", "LabNode", "LabStatus", "down", "ensure_image",
    "image_ref", "list_labs", "podman", "podman_env", "status", "up",
]
