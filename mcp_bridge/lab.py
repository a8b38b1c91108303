"""A lab of real worker nodes: podman containers that behave like fresh servers.

Each node is its own container (its own network namespace) running sshd, published
on its own loopback address (127.0.0.11:22, 127.0.0.12:22, ...). Root logs in with
the lab's admin key only; there is no ``jexida`` user until the role creates it.
The CLI (``jexida lab``), the pytest fixtures and bench/ all use these functions.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from mcp_bridge.paths import REPO_ROOT, ensure_private_dir, jexida_home

CONTAINERS_CONF = REPO_ROOT / "lab" / "containers.conf"
IMAGE_NAME = "localhost/jexida-node"
DEFAULT_BASE_ADDRESS = "127.0.0.11"
SSH_PORT = 22
LABEL_LAB = "io.jexida.lab"
LABEL_NODE = "io.jexida.node"
LABEL_ADDRESS = "io.jexida.address"

# What a fresh Debian 12 cloud server has. pip/venv and nftables are in the image so the
# lab needs no network of its own; the role still declares and checks them.
IMAGE_PACKAGES: tuple[str, ...] = (
    "python3",
    "python3-apt",
    "python3-venv",
    "python3-pip",
    "openssh-server",
    "sudo",
    "adduser",
    "procps",
    "nftables",
    "logrotate",
)
IMAGE_SUITE = "bookworm"
# Bump when the recipe below changes: the tag is derived from it, so a stale image is rebuilt.
IMAGE_RECIPE_VERSION = "4"

# sshd is started as a daemon (so the role can restart it like on a real server) and the
# container's main process is `sleep infinity`, which obeys SIGTERM under --init.
NODE_START_SCRIPT = r"""
set -e
test -f /etc/ssh/ssh_host_ed25519_key || ssh-keygen -A >/dev/null
mkdir -p /run/sshd /root/.ssh
chmod 700 /root/.ssh
printf '%s\n' "$JEXIDA_ADMIN_KEY" > /root/.ssh/authorized_keys
chmod 600 /root/.ssh/authorized_keys
/usr/sbin/sshd
exec sleep infinity
"""

SSHD_FRESH_SERVER_CONFIG = """\
# Like a new cloud server: root by key only, no passwords.
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
"""


class LabError(RuntimeError):
    """A lab operation failed; the message says what and what to do."""


@dataclass
class LabNode:
    name: str
    container: str
    address: str
    port: int = SSH_PORT
    state: str = "missing"  # podman's state: running, exited, created, ... or missing
    ssh: bool = False  # sshd answered on address:port

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


# --- podman -------------------------------------------------------------------------------


def podman_env() -> dict[str, str]:
    """The environment for podman: the project's CONTAINERS_CONF (runc + ulimits)."""
    env = dict(os.environ)
    env["CONTAINERS_CONF"] = str(CONTAINERS_CONF)
    return env


def podman(*args: str, check: bool = True, input_bytes: bytes | None = None) -> str:
    if shutil.which("podman") is None:
        raise LabError("podman is not installed: run `make setup` (apt-get install podman runc)")
    proc = subprocess.run(
        ["podman", *args],
        env=podman_env(),
        input=input_bytes,
        capture_output=True,
        check=False,
    )
    if check and proc.returncode != 0:
        raise LabError(
            f"podman {' '.join(args[:2])} failed (rc={proc.returncode}): "
            f"{proc.stderr.decode(errors='replace').strip()}"
        )
    return proc.stdout.decode(errors="replace")


# --- the node image -----------------------------------------------------------------------


def image_ref() -> str:
    recipe = "|".join([IMAGE_SUITE, IMAGE_RECIPE_VERSION, *IMAGE_PACKAGES, NODE_START_SCRIPT])
    digest = hashlib.sha256(recipe.encode()).hexdigest()[:10]
    return f"{IMAGE_NAME}:{IMAGE_SUITE}-{digest}"


def image_exists(ref: str) -> bool:
    proc = subprocess.run(
        ["podman", "image", "exists", ref], env=podman_env(), capture_output=True, check=False
    )
    return proc.returncode == 0


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (the only package source it reaches)."""
    configured = os.environ.get("JEXIDA_DEBIAN_MIRROR")
    if configured:
        return configured
    candidates = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for source in candidates:
        if not source.is_file():
            continue
        text = source.read_text(errors="replace")
        for match in re.finditer(r"^URIs:\s*(\S+)", text, re.MULTILINE):
            if "security" not in match.group(1):
                return match.group(1)
        for match in re.finditer(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+\S+", text, re.MULTILINE):
            if "security" not in match.group(1):
                return match.group(1)
    return "http://deb.debian.org/debian"


def ensure_image(log: bool = True) -> str:
    """Build the node image once (debootstrap + podman import); reuse it while the tag exists."""
    ref = image_ref()
    if image_exists(ref):
        return ref
    if shutil.which("debootstrap") is None:
        raise LabError("debootstrap is not installed: run `make setup`")
    if log:
        print(f"lab: building node image {ref} (debootstrap, about a minute, once)", flush=True)
    build_root = Path(tempfile.mkdtemp(prefix="jexida-image-", dir="/var/tmp"))
    rootfs = build_root / "rootfs"
    try:
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(IMAGE_PACKAGES)}",
                IMAGE_SUITE,
                str(rootfs),
                debian_mirror(),
            ],
            check=True,
            capture_output=True,
        )
        # Host keys made by the package are shared by every container: each node makes its own.
        for key in (rootfs / "etc" / "ssh").glob("ssh_host_*"):
            key.unlink()
        (rootfs / "etc" / "ssh" / "sshd_config.d" / "00-fresh-server.conf").write_text(
            SSHD_FRESH_SERVER_CONFIG
        )
        # sshd restarted from inside an SSH session (as the role's handler does) inherits that
        # session's loginuid; a container may not change it (no CAP_AUDIT_CONTROL), so a required
        # pam_loginuid would end every non-root login with exit 254. Real servers restart sshd
        # from systemd and never hit this.
        pam_sshd = rootfs / "etc" / "pam.d" / "sshd"
        pam_sshd.write_text(
            re.sub(r"^session\s+required\s+pam_loginuid\.so", "session optional pam_loginuid.so",
                   pam_sshd.read_text(), flags=re.MULTILINE)
        )
        shutil.rmtree(rootfs / "var" / "cache" / "apt" / "archives", ignore_errors=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        assert tar.stdout is not None
        imported = subprocess.run(
            ["podman", "import", "--change", "CMD /bin/bash", "-", ref],
            stdin=tar.stdout,
            env=podman_env(),
            capture_output=True,
            check=False,
        )
        tar.stdout.close()
        tar.wait()
        if imported.returncode != 0:
            raise LabError(f"podman import failed: {imported.stderr.decode(errors='replace')}")
    except subprocess.CalledProcessError as exc:
        stderr = (exc.stderr or b"").decode(errors="replace")[-2000:]
        raise LabError(f"building the node image failed: {stderr}") from exc
    finally:
        shutil.rmtree(build_root, ignore_errors=True)
    _remove_stale_images(keep=ref)
    return ref


def _remove_stale_images(keep: str) -> None:
    """Drop node images of older recipes (podman refuses while a container still uses one)."""
    listed = podman("images", "--format", "{{.Repository}}:{{.Tag}}", IMAGE_NAME, check=False)
    for ref in listed.split():
        if ref != keep and ref.startswith(IMAGE_NAME + ":"):
            podman("rmi", ref, check=False)


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
            )
        )
    nodes.sort(key=lambda node: ipaddress.IPv4Address(node.address or "0.0.0.0"))
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda n: n.state == "running" and _ssh_answers(n.address, n.port), nodes))
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


def _start_node(lab: str, index: int, address: str, image: str, admin_pub: str) -> None:
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
        image, "/bin/sh", "-c", NODE_START_SCRIPT,
    )


def _wait_for_ssh(nodes: Sequence[LabNode], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    pending = list(nodes)
    while pending and time.monotonic() < deadline:
        pending = [node for node in pending if not _ssh_answers(node.address, node.port)]
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
    """An inventory with the lab's admin access (root + admin key) that Ansible uses as is."""
    hosts = {node.name: {"ansible_host": node.address, "ansible_port": node.port} for node in lab.nodes}
    ssh_args = f"-o UserKnownHostsFile={lab.known_hosts} -o StrictHostKeyChecking=yes"
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


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def up(name: str = "default", nodes: int = 3, base_address: str = DEFAULT_BASE_ADDRESS) -> LabStatus:
    """Make the lab have exactly ``nodes`` running nodes. Running twice changes nothing."""
    if not 1 <= nodes <= 200:
        raise LabError(f"--nodes must be between 1 and 200, got {nodes}")
    state = ensure_private_dir(lab_dir(name))
    image = ensure_image()
    admin_key = ensure_admin_key(state)
    admin_pub = admin_key.with_suffix(".pub").read_text().strip()

    current = {node.name: node for node in status(name).nodes}
    wanted = {node_name(name, i): i for i in range(1, nodes + 1)}
    # Nodes beyond the wanted count go away; a node whose container stopped is restarted.
    for extra in set(current) - set(wanted):
        podman("rm", "-f", current[extra].container)
    taken = {str(c.get("Labels", {}).get(LABEL_ADDRESS)) for c in _lab_containers()}  # type: ignore[union-attr]
    missing = [n for n in wanted if n not in current]
    addresses = iter(_free_addresses(len(missing), base_address, taken))
    for name_, index in wanted.items():
        node = current.get(name_)
        if node is None:
            _start_node(name, index, next(addresses), image, admin_pub)
        elif node.state != "running":
            podman("start", node.container)
    lab = status(name)
    lab.nodes = [node for node in lab.nodes if node.name in wanted]
    _wait_for_ssh(lab.nodes)
    lines = [_host_key_line(node) for node in lab.nodes]
    _atomic_write(Path(lab.known_hosts), "\n".join(lines) + "\n")
    write_inventory(lab)
    return status(name)


def down(name: str = "default") -> list[str]:
    """Remove this lab's containers and state; other labs are left alone."""
    removed = []
    for container in _lab_containers(name):
        names = container.get("Names") or []
        assert isinstance(names, list)
        podman("rm", "-f", "-t", "0", str(names[0]))
        removed.append(str(names[0]))
    shutil.rmtree(lab_dir(name), ignore_errors=True)
    return removed


def list_labs() -> list[str]:
    labs = set()
    for container in _lab_containers():
        labels = container.get("Labels") or {}
        assert isinstance(labels, dict)
        labs.add(str(labels.get(LABEL_LAB)))
    return sorted(labs)
