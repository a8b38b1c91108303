"""A worker behind an execution node, on real lab nodes: the bridge streams its commands through it.

The lab (`lab.up(..., hidden=1)`): node1 is published on a loopback address and also sits on an
internal podman network; hidden1 sits only on that network. One bootstrap run makes node1 an
execution node (jexida_worker_execution_node: the ansible-core/ansible-runner venv and the guard)
and provisions hidden1 through node1 as a bastion (`jexida_via`: the only way the controller's
playbook reaches it), registering it with `execution_node: <node1>`. From then on the bridge runs
hidden1's commands ON node1 (ansible-runner transmit -> ssh node1 jexida-worker-guard/worker ->
process); node1 keeps its jump option only so the inventory can probe hidden1 through it.
"""

from __future__ import annotations

import json
import secrets
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
import yaml
from conftest import run_bootstrap, write_jexida_config
from mcp_client import bridge_client, bridge_env, bridge_session, call, structured, submit_then_kill_bridge

import jexida_lab as lab

pytestmark = [pytest.mark.integration]

EXEC_LAB = "pytest-exec"


@dataclass
class ExecLab:
    status: lab.LabStatus
    runner: lab.LabNode  # the execution node
    hidden: lab.LabNode
    admin_hop: list[str]
    registry: Path
    config: Path
    bootstrap: subprocess.CompletedProcess[str]

    def on_hidden(self, command: str) -> subprocess.CompletedProcess[str]:
        """A command on hidden1 as root, over plain ssh through node1 (not the bridge)."""
        argv = ["ssh", "-i", self.status.admin_key, "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
                *self.admin_hop, f"root@{self.hidden.address}", command]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)

    def on_runner(self, command: str) -> str:
        return lab.podman("exec", self.runner.container, "sh", "-c", command)


@pytest.fixture(scope="session")
def exec_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExecLab]:
    status = lab.up(EXEC_LAB, nodes=1, hidden=1)
    runner, hidden = status.nodes
    work = tmp_path_factory.mktemp("exec")
    inventory = yaml.safe_load(Path(status.inventory).read_text())
    hosts = inventory["all"]["children"][f"lab_{EXEC_LAB.replace('-', '_')}"]["hosts"]
    hosts[runner.name].update(jexida_tags=["runner"], jexida_worker_execution_node=True)
    hosts[hidden.name].update(jexida_tags=["behind"], jexida_execution_node=runner.name)
    admin_inventory = work / "inventory.yml"
    admin_inventory.write_text(yaml.safe_dump(inventory))
    registry = work / "nodes.yml"
    run = run_bootstrap(admin_inventory, "-e", f"jexida_registry={registry}")
    yield ExecLab(status=status, runner=runner, hidden=hidden,
                  admin_hop=shlex.split(hosts[hidden.name]["ansible_ssh_common_args"]), registry=registry,
                  config=write_jexida_config(work / "exec.jexida.yml", registry), bootstrap=run)
    lab.down(EXEC_LAB)


def test_bootstrap_made_an_execution_node_and_registered_the_worker_behind_it(exec_lab: ExecLab) -> None:
    run = exec_lab.bootstrap
    assert run.returncode == 0, run.stdout[-4000:]
    entries = {e["name"]: e for e in yaml.safe_load(exec_lab.registry.read_text())["nodes"]}
    behind = entries[exec_lab.hidden.name]
    assert behind["execution_node"] == exec_lab.runner.name and "via" not in behind, behind
    assert entries[exec_lab.runner.name]["vars"]["jexida_worker_execution_node"] is True
    from importlib.metadata import version

    versions = exec_lab.on_runner("/opt/jexida-runner/bin/ansible-runner --version; "
                                  "/opt/jexida-runner/bin/ansible --version | head -1")
    assert version("ansible-runner") in versions and version("ansible-core") in versions, versions
    assert exec_lab.on_runner("test -x /opt/jexida-runner/bin/jexida-worker-guard && echo yes").strip() == "yes"


def test_the_host_cannot_reach_the_hidden_worker_directly(exec_lab: ExecLab) -> None:
    assert lab.hidden.answers_via(exec_lab.runner.container, exec_lab.hidden.address)
    with pytest.raises(OSError), socket.create_connection((exec_lab.hidden.address, 22), timeout=3) as sock:
        sock.recv(4)


def _processes(exec_lab: ExecLab, pattern: str) -> tuple[list[str], list[str]]:
    """PIDs matching ``pattern`` on hidden1 and on node1 (the execution node)."""
    behind = exec_lab.on_hidden(f"pgrep -f {shlex.quote(pattern)} || true").stdout.split()
    runner = exec_lab.on_runner(f"pgrep -f {shlex.quote(pattern)} || true").split()
    return behind, runner


@pytest.mark.anyio
async def test_commands_run_through_the_execution_node_as_direct_ones(exec_lab: ExecLab) -> None:
    hidden = exec_lab.hidden.name
    async with bridge_session(exec_lab.config, JEXIDA_OUTPUT_CAP="65536") as session:
        listed = await call(session, "list_worker_nodes")
        check = await call(session, "check_worker_node", name=hidden, detailed=True)
        ran = await call(session, "offload_to", command="hostname; id -un; echo oops >&2; exit 3", node_id=hidden)
        routed = await call(session, "cluster_bash", command="hostname", requires_tags=["behind"])
        capped = await call(session, "offload_to", command="seq 1 300000", node_id=hidden)
        slow = await call(session, "offload_to", command="sleep 317; echo never", node_id=hidden, timeout_s=2)
    info = {n["name"]: n for n in listed["result"]}
    assert info[hidden]["execution_node"] == exec_lab.runner.name and info[hidden]["health"] == "available"
    assert check["reachable"] is True, check
    assert ran["status"] == "failed" and ran["rc"] == 3, ran
    assert ran["stdout"].split() == [hidden, "jexida"] and ran["stderr"] == "oops", ran
    assert routed["node"] == hidden and routed["stdout"].strip() == hidden, routed
    assert capped["truncated"] is True and capped["status"] == "succeeded"
    assert capped["stdout"].startswith("1\n2\n3\n") and capped["stdout"].endswith("299999\n300000")
    assert capped["stdout_bytes"] > 1_000_000 and len(capped["stdout"]) < 70_000
    assert slow["status"] == "timeout" and "never" not in slow["stdout"], slow
    assert _processes(exec_lab, "^sleep 317") == ([], [])


@pytest.mark.anyio
async def test_a_tracked_job_survives_a_killed_bridge(exec_lab: ExecLab) -> None:
    hidden = exec_lab.hidden.name
    submitted = await submit_then_kill_bridge(exec_lab.config, command="sleep 6; echo finishing; exit 4",
                                              node_name=hidden)
    assert submitted["node"] == hidden, submitted
    async with bridge_session(exec_lab.config) as session:
        deadline = time.monotonic() + 90
        while (job := await call(session, "get_job", job_id=submitted["job_id"]))["status"] == "running":
            assert time.monotonic() < deadline, job
            await anyio.sleep(1)
        output = await call(session, "job_output", job_id=submitted["job_id"], tail=1)
    assert job["status"] == "failed" and job["rc"] == 4, job
    assert output["data"].split() == ["finishing"]


@pytest.mark.anyio
async def test_a_canceled_call_stops_the_command_and_the_worker(exec_lab: ExecLab) -> None:
    hidden = exec_lab.hidden.name
    marker = f"sleep {secrets.randbelow(90000) + 510000}"  # unique: the audit log outlives test sessions
    def left() -> tuple[list[str], list[str]]:
        behind, _ = _processes(exec_lab, f"^{marker}$")
        # [a]/[j]: the pattern must not match the shell that runs pgrep
        workers = exec_lab.on_runner("pgrep -af '[a]nsible-runner worker|[j]exida-worker-guard' || true")
        return behind, workers.splitlines()

    async with bridge_client(exec_lab.config) as client:
        async with anyio.create_task_group() as calls:
            calls.start_soon(client.call_tool, "offload_to", {"command": f"{marker}; echo never", "node_id": hidden})
            deadline = time.monotonic() + 60
            while not all(started := await anyio.to_thread.run_sync(left)) and time.monotonic() < deadline:
                await anyio.sleep(0.5)
            calls.cancel_scope.cancel()  # the client abandons the call: notifications/cancelled
        assert all(started), f"before the cancel, the command on hidden1 and the worker on node1: {started}"

        running = await anyio.to_thread.run_sync(left)
        deadline = time.monotonic() + 10
        while running != ([], []) and time.monotonic() < deadline:
            await anyio.sleep(0.5)
            running = await anyio.to_thread.run_sync(left)
        after = await structured(client, "offload_to", command="echo still-serving", node_id=hidden)
    assert running == ([], []), f"10 s after the cancel: {marker} on hidden1, workers on node1: {running}"
    assert after["stdout"].strip() == "still-serving"


def test_jexida_provision_dry_run_reaches_the_node_through_its_execution_node(exec_lab: ExecLab,
                                                                               tmp_path: Path) -> None:
    """Registered as root with the admin key (as `jexida nodes add --user root` makes a fresh server): the
    dry run of the bootstrap reaches hidden1 through node1 as a bastion and would register it unchanged."""
    document = yaml.safe_load(exec_lab.registry.read_text())
    for entry in document["nodes"]:
        entry.update(user="root", vars={**entry["vars"], "ansible_ssh_private_key_file": exec_lab.status.admin_key})
    registry = tmp_path / "nodes.yml"
    registry.write_text(yaml.safe_dump(document))
    config = write_jexida_config(tmp_path / "variant.jexida.yml", registry)
    before = registry.read_text()
    dry = subprocess.run([str(Path(sys.executable).parent / "jexida"), "provision", exec_lab.hidden.name,
                          "--inventory", str(config), "--json"], capture_output=True, text=True, timeout=600,
                         env=bridge_env(), check=False)
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-2000:]
    tasks = {t["task"]: t["status"] for t in json.loads(dry.stdout)["tasks"]}
    assert tasks["Check the bastion this node is reached through (jexida_via)"] == "ok", tasks
    assert tasks["Create the worker user (no password, key login only)"] == "ok", tasks
    assert registry.read_text() == before  # a dry run registers nothing
