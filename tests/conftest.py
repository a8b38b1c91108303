"""Shared fixtures: a private home for everything the tests write, and session-scoped labs of real nodes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
# Tests never touch the person's own ~/.ansible, ~/.config/jexida or state folder (`make test`
# sets the same folders; these defaults cover a bare `pytest`).
TEST_HOME = REPO_ROOT / ".cache" / "test-home"
for variable, folder in (("ANSIBLE_HOME", "ansible"), ("ANSIBLE_SSH_CONTROL_PATH_DIR", "ansible/cp"),
                         ("XDG_CONFIG_HOME", "config"), ("XDG_STATE_HOME", "state"),
                         ("XDG_CACHE_HOME", "cache"), ("JEXIDA_HOME", "state/jexida")):
    os.environ.setdefault(variable, str(TEST_HOME / folder))
os.environ.setdefault("CONTAINERS_CONF", str(REPO_ROOT / "jexida_lab" / "containers.conf"))
# The tools the tests call (ansible, ansible-galaxy, jexida) are the venv's.
os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")

import jexida_lab as lab  # noqa: E402  (imports Ansible: the folders above must be set first)

TEST_LAB = "pytest"
# The inventory plugin's unit-test fixtures (jexida, fake_probe, no_stray_env).
pytest_plugins = ["inventory_helpers"]


@pytest.fixture(scope="session")
def test_lab() -> Iterator[lab.LabStatus]:
    """Three fresh nodes, shared by the integration tests that do not change them."""
    status = lab.up(TEST_LAB, nodes=3)
    yield status
    lab.down(TEST_LAB)


def ssh_argv(status: lab.LabStatus, node: lab.LabNode, user: str = "root",
             key: str | None = None, extra: list[str] | None = None) -> list[str]:
    return [
        "ssh", *(extra or []), "-i", key or status.admin_key,
        "-o", f"UserKnownHostsFile={status.known_hosts}",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "BatchMode=yes",
        "-o", "ConnectTimeout=5",
        "-p", str(node.port),
        f"{user}@{node.address}",
    ]


def ssh_run(status: lab.LabStatus, node: lab.LabNode, command: str, user: str = "root",
            key: str | None = None, extra: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command on a node over real SSH, as a person would."""
    return subprocess.run(
        [*ssh_argv(status, node, user, key, extra), command],
        capture_output=True, text=True, timeout=60, check=False,
    )


WORKER_LAB = "pytest-workers"
# Tags the bootstrap gives each worker node (by position), so routing has something to choose by.
WORKER_TAGS = (["gpu", "docker"], ["docker"], [])


def run_bootstrap(inventory: Path | str, *args: str) -> subprocess.CompletedProcess[str]:
    """ansible-playbook playbooks/bootstrap.yml, as a person runs it from the checkout."""
    return subprocess.run(
        ["ansible-playbook", "-i", str(inventory), "playbooks/bootstrap.yml", *args],
        cwd=REPO_ROOT, capture_output=True, text=True, check=False, timeout=900,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"},
    )


def controller_key() -> str:
    """The controller's private key that the bootstrap playbook made (in JEXIDA_HOME)."""
    from mcp_bridge.paths import state_dir

    return str(state_dir() / "controller_ed25519")


@dataclass
class WorkerLab:
    """Lab nodes made into workers by playbooks/bootstrap.yml, and where they are registered."""

    status: lab.LabStatus
    registry: Path
    admin_inventory: Path
    first_run: subprocess.CompletedProcess[str]

    @property
    def nodes(self) -> list[lab.LabNode]:
        return self.status.nodes


@pytest.fixture(scope="session")
def worker_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerLab]:
    """Three fresh nodes bootstrapped in one run, together with a node that does not exist."""
    status = lab.up(WORKER_LAB, nodes=3)
    work = tmp_path_factory.mktemp("workers")
    inventory = yaml.safe_load(Path(status.inventory).read_text())
    group = inventory["all"]["children"][f"lab_{WORKER_LAB.replace('-', '_')}"]
    for node, tags in zip(status.nodes, WORKER_TAGS, strict=True):
        group["hosts"][node.name]["jexida_tags"] = tags
    inventory["all"]["children"]["ghosts"] = {
        "hosts": {"ghost-node": {"ansible_host": "127.0.0.250", "ansible_port": 22}},
        "vars": {"ansible_ssh_common_args": "-o ConnectTimeout=3 -o UserKnownHostsFile=/dev/null"},
    }
    admin_inventory = work / "inventory.yml"
    admin_inventory.write_text(yaml.safe_dump(inventory))
    registry = work / "nodes.yml"
    first = run_bootstrap(admin_inventory, "-e", f"jexida_registry={registry}")
    yield WorkerLab(status=status, registry=registry, admin_inventory=admin_inventory, first_run=first)
    lab.down(WORKER_LAB)


def write_jexida_config(path: Path, registry: Path, **options: object) -> Path:
    """An inventory config for the jexida plugin over ``registry``.

    Lab nodes share this machine's load average, so tests that are not about thresholds
    raise the overload edges: a busy test machine must not make nodes unavailable.
    """
    config: dict[str, object] = {
        "plugin": "jexida.cluster.jexida",
        "nodes_file": str(registry),
        "thresholds": {"overloaded_mem_pct": 99, "overloaded_load_per_cpu": 1000, "busy_load_per_cpu": 500,
                       "idle_load_per_cpu": 400},
        "connect_timeout": 3,
    }
    config.update(options)
    path.write_text(yaml.safe_dump(config))
    return path


def ansible_cli(*argv: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """Run an Ansible command from the checkout, as a person would."""
    return subprocess.run(list(argv), cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout,
                          check=False, env={**os.environ, "ANSIBLE_NOCOLOR": "1"})


@pytest.fixture(scope="session")
def initialised() -> Path:
    """The configuration `jexida init` makes (in the tests' own config folder): its inventory config."""
    from mcp_bridge.userconfig import init_config

    return init_config().paths["inventory"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def lab_config(worker_lab: WorkerLab, tmp_path: Path) -> Path:
    """A jexida inventory config over the worker lab's registry."""
    return write_jexida_config(tmp_path / "lab.jexida.yml", worker_lab.registry)


def as_jexida(worker_lab: WorkerLab, node: lab.LabNode, command: str) -> subprocess.CompletedProcess[str]:
    """Run a command on a worker as `jexida` with the controller key, over real SSH."""
    return ssh_run(worker_lab.status, node, command, user="jexida", key=controller_key())


@pytest.fixture
def stopped_node(request: pytest.FixtureRequest, worker_lab: WorkerLab) -> Iterator[lab.LabNode]:
    """A worker node that is down for the test (which node: `indirect` parametrization, default the first)."""
    with node_stopped(worker_lab, getattr(request, "param", 0)) as node:
        yield node


@contextmanager
def node_stopped(worker_lab: WorkerLab, index: int) -> Iterator[lab.LabNode]:
    """Stop one worker node's container (as a machine that died); bring the lab back afterwards."""
    node = worker_lab.nodes[index]
    lab.podman("stop", "-t", "0", node.container)
    try:
        yield node
    finally:
        lab.up(worker_lab.status.name, nodes=len(worker_lab.nodes))


FANOUT_LAB = "pytest-fanout"


@pytest.fixture(scope="session")
def fanout_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Five fresh nodes reached as root with the lab's admin key (no bootstrap): for fan-out tests
    (broadcast progress, cancel on many nodes) that need nodes but not the worker set-up."""
    status = lab.up(FANOUT_LAB, nodes=5)
    work = tmp_path_factory.mktemp("fanout")
    connection = {"ansible_ssh_private_key_file": status.admin_key,
                  "ansible_ssh_common_args": f"-o UserKnownHostsFile={status.known_hosts} -o StrictHostKeyChecking=yes"}
    registry = {"nodes": [{"name": node.name, "host": node.address, "port": node.port, "user": "root",
                           "tags": ["fanout"], "vars": connection} for node in status.nodes]}
    (work / "nodes.yml").write_text(yaml.safe_dump(registry))
    yield write_jexida_config(work / "fanout.jexida.yml", work / "nodes.yml")
    lab.down(FANOUT_LAB)
