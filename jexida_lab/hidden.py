"""Lab nodes behind a bastion: a podman network the host cannot reach, and a bastion on both sides.

``lab.up(name, nodes=N, hidden=M)`` adds M hidden nodes (``<lab>-hidden1`` ...) on an internal
podman network of their own (``podman network create --internal``, no DNS), with no published
port, and connects node 1 (the bastion, still published on its loopback address) to that
network too. Every other lab address stays in 127.0.0.0/8; the hidden network is the lab's own.

An internal podman network still gives the host an address on its bridge (the gateway), so
the host could connect to a hidden node directly. Each hidden node therefore drops, in its
own network namespace (never the host's), every packet that does not come from the bastion
or from itself: the host's connection attempts time out, as on a network it has no route to.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass

from jexida_lab.image import NODE_START_SCRIPT
from jexida_lab.podman import LabError, podman

LABEL_LAB = "io.jexida.lab"
LABEL_NODE = "io.jexida.node"
LABEL_ADDRESS = "io.jexida.address"
LABEL_VIA = "io.jexida.via"
BASTION_HOST_INDEX = 2  # the bastion's address on the hidden network: <subnet>.2
FIRST_HIDDEN_HOST_INDEX = 11  # hidden node i: <subnet>.(10 + i)
FENCE_TABLE = "jexida_lab_hidden"


@dataclass(frozen=True)
class HiddenNetwork:
    name: str
    subnet: ipaddress.IPv4Network

    def host(self, index: int) -> str:
        return str(self.subnet.network_address + index)

    @property
    def bastion_address(self) -> str:
        return self.host(BASTION_HOST_INDEX)


def network_name(lab: str) -> str:
    return f"jexida-lab-{lab}-hidden"


def hidden_container(lab: str, index: int) -> str:
    return f"jexida-lab-{lab}-hidden{index}"


def hidden_node_name(lab: str, index: int) -> str:
    return f"{lab}-hidden{index}"


def ensure_network(lab: str) -> HiddenNetwork:
    """The lab's internal network (created once; podman picks a free subnet)."""
    name = network_name(lab)
    if name not in podman("network", "ls", "--format", "{{.Name}}").split():
        podman("network", "create", "--internal", "--disable-dns", "--label", f"{LABEL_LAB}={lab}", name)
    info = json.loads(podman("network", "inspect", name))[0]
    subnets = [ipaddress.ip_network(s["subnet"]) for s in info.get("subnets") or []]
    v4 = [s for s in subnets if isinstance(s, ipaddress.IPv4Network)]
    if not info.get("internal") or not v4:
        raise LabError(f"podman network {name} is not an internal IPv4 network; remove it (`jexida lab down`)")
    return HiddenNetwork(name=name, subnet=v4[0])


def remove_networks(lab: str) -> list[str]:
    """Remove the lab's networks (after its containers are gone)."""
    names = podman("network", "ls", "--filter", f"label={LABEL_LAB}={lab}", "--format", "{{.Name}}").split()
    for name in names:
        podman("network", "rm", "-f", name)
    return names


def connect_bastion(container: str, network: HiddenNetwork) -> None:
    """Put the bastion (already running on podman's default network) on the hidden network too."""
    info = json.loads(podman("inspect", container))[0]
    if network.name not in ((info.get("NetworkSettings") or {}).get("Networks") or {}):
        podman("network", "connect", "--ip", network.bastion_address, network.name, container)


def start_hidden(lab: str, index: int, network: HiddenNetwork, bastion_node: str, image: str,
                 admin_pub: str) -> None:
    """A node on the hidden network only: no published port; NET_ADMIN only for its own fence."""
    name = hidden_container(lab, index)
    address = network.host(FIRST_HIDDEN_HOST_INDEX + index - 1)
    podman("rm", "-f", "--ignore", name)
    podman(
        "run", "-d", "--init",
        "--name", name,
        "--hostname", hidden_node_name(lab, index),
        "--network", network.name, "--ip", address,
        "--cap-add", "NET_ADMIN",
        "--label", f"{LABEL_LAB}={lab}",
        "--label", f"{LABEL_NODE}={hidden_node_name(lab, index)}",
        "--label", f"{LABEL_ADDRESS}={address}",
        "--label", f"{LABEL_VIA}={bastion_node}",
        "-e", f"JEXIDA_ADMIN_KEY={admin_pub}",
        image, "/bin/sh", "-c", NODE_START_SCRIPT,
    )


def fence(container: str, network: HiddenNetwork) -> None:
    """Inside the hidden node's own network namespace: accept only the bastion (and itself).

    Applied again on every `up` (a restarted container has a fresh namespace); the table is
    replaced as a whole, so this is idempotent.
    """
    rules = f"""
table inet {FENCE_TABLE}
delete table inet {FENCE_TABLE}
table inet {FENCE_TABLE} {{
    chain input {{
        type filter hook input priority 0; policy drop;
        iif "lo" accept
        ip saddr {network.bastion_address} accept comment "the bastion"
    }}
}}
"""
    podman("exec", "-i", container, "nft", "-f", "-", input_bytes=rules.encode())


def answers_via(bastion_container: str, address: str, port: int = 22, timeout_s: int = 2) -> bool:
    """True when an SSH server greets the bastion at address:port (the host itself cannot ask)."""
    probe = f"exec 3<>/dev/tcp/{address}/{port} && head -c 4 <&3"
    out = podman("exec", bastion_container, "timeout", str(timeout_s), "bash", "-c", probe, check=False)
    return out.startswith("SSH-")
