"""Issue 12 through real MCP sessions on lab nodes: host keys are checked, a 200 kB command runs whole,
light commands run on the controller (a local-connection node), become still works, and commands run
on the warm Ansible, with timeout, cancel and a fallback when its server dies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
import yaml
from conftest import WorkerLab, as_jexida, controller_key, write_jexida_config
from mcp_client import bridge_client, bridge_pids, bridge_session, call, structured

import jexida_lab as lab
from mcp_bridge.paths import state_dir

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


def latest_runs(count: int = 1) -> list[Path]:
    """The newest ansible-runner folders of the bridge (one per Ansible run)."""
    folders = [p for p in (state_dir() / "runner").iterdir() if (p / "artifacts" / "run" / "command").exists()]
    return sorted(folders, key=lambda p: (p / "artifacts" / "run" / "command").stat().st_mtime)[-count:]


def ran_warm(folder: Path) -> bool:
    command = json.loads((folder / "artifacts" / "run" / "command").read_text())["command"]
    return "warm/client.py" in " ".join(command)


def registry_with(worker_lab: WorkerLab, path: Path, *extra: dict[str, object]) -> Path:
    nodes = yaml.safe_load(worker_lab.registry.read_text())["nodes"]
    path.write_text(yaml.safe_dump({"nodes": [*nodes, *extra]}))
    return path


async def test_an_unknown_host_key_is_refused(worker_lab: WorkerLab, tmp_path: Path) -> None:
    """ansible-runner turned host key checking off unless told; the bridge now keeps Ansible's own setting."""
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    control = tmp_path / "cp"  # a fresh ControlPath: no master to reuse
    control.mkdir()
    stranger = {"name": "stranger", "host": worker_lab.nodes[0].address, "user": "jexida",
                "vars": {"ansible_ssh_private_key_file": controller_key(),
                         "ansible_ssh_common_args": f"-o UserKnownHostsFile={empty}",
                         "ansible_control_path_dir": str(control)}}
    config = write_jexida_config(tmp_path / "k.jexida.yml", registry_with(worker_lab, tmp_path / "nodes.yml",
                                                                            stranger))
    async with bridge_session(config) as session:
        result = await call(session, "offload_to", command="echo should-not-run", node_id="stranger")
    assert result["status"] == "unreachable" and "should-not-run" not in result["stdout"]
    assert "Host key verification failed" in result["message"], result["message"]
    assert empty.read_text() == "", "the unknown key must not be recorded"


async def test_a_200_kb_command_runs_whole(worker_lab: WorkerLab, lab_config: Path, tmp_path: Path) -> None:
    text = "".join(f"{i:05x}" for i in range(40_000))  # 200 kB, no repeats
    node = worker_lab.nodes[0].name
    # The policy analyses at most 64 KiB of a command; a longer one needs a person's yes, which this
    # client cannot give: the policy file answers for it.
    policy = tmp_path / "policy.yml"
    policy.write_text("on_unsure: allow\n")
    async with bridge_session(lab_config, JEXIDA_POLICY=str(policy)) as session:
        one = await call(session, "offload_to", command=f"echo {text}", node_id=node)
        batch = await call(session, "parallel_execute", commands=[f"echo {text} | wc -c", "echo small"])
        job = await call(session, "submit_job", command=f"echo {text}", node_name=node, wait_s=60)
    assert one["status"] == "succeeded", one["message"]
    assert one["stdout"] == text and one["stdout_bytes"] == len(text) + 1
    assert [r["stdout"].strip() for r in batch["results"]] == [str(len(text) + 1), "small"]
    assert job["status"] == "succeeded" and job["stdout"] == text


@pytest.fixture
def with_controller(worker_lab: WorkerLab, tmp_path: Path) -> Path:
    """The worker lab plus this machine as a node on a local connection, shown busy with four (fake)
    jobs so that placement by load never picks it: only the light-command rule can."""
    jobs = tmp_path / "controller-jobs"
    for index in range(4):
        (jobs / f"busy{index}").mkdir(parents=True)
        (jobs / f"busy{index}" / "pid").write_text(str(os.getpid()))
    controller = {"name": "zz-controller", "host": "localhost", "tags": ["controller"],
                  "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                           "jexida_worker_job_dir": str(jobs)}}
    return registry_with(worker_lab, tmp_path / "nodes.yml", controller)


async def test_light_commands_run_on_the_controller(worker_lab: WorkerLab, with_controller: Path,
                                                    tmp_path: Path) -> None:
    config = write_jexida_config(tmp_path / "c.jexida.yml", with_controller)
    lab_nodes = {n.name for n in worker_lab.nodes}
    async with bridge_session(config) as session:
        light = await call(session, "cluster_bash", command="ls -la")
        piped = await call(session, "cluster_bash", command="cat /etc/hostname | wc -l")
        heavy = await call(session, "cluster_bash", command="python3 -c 'print(1)'")
        placed = await call(session, "cluster_bash", command="ls -la", requires_tags=["docker"])
    assert light["node"] == "zz-controller" and light["status"] == "succeeded"
    assert "light command (ls)" in light["routing"]["reason"]
    assert light["stdout"].startswith("total ")
    assert piped["node"] == "zz-controller" and "light command (cat, wc)" in piped["routing"]["reason"]
    assert heavy["node"] in lab_nodes and heavy["stdout"] == "1"
    assert "light" not in heavy["routing"]["reason"] and "least loaded" in heavy["routing"]["reason"]
    assert placed["node"] in lab_nodes  # requirements: by load among the capable nodes


async def test_light_routing_has_an_off_switch(worker_lab: WorkerLab, with_controller: Path, tmp_path: Path) -> None:
    config = write_jexida_config(tmp_path / "off.jexida.yml", with_controller, light_commands=[])
    async with bridge_session(config) as session:
        result = await call(session, "cluster_bash", command="ls -la")
    assert result["node"] in {n.name for n in worker_lab.nodes}
    assert "light" not in result["routing"]["reason"]


async def test_a_node_that_needs_become_with_a_sudo_password(tmp_path: Path) -> None:
    status = lab.up("pytest-become", nodes=1)
    node = status.nodes[0]
    try:
        lab.podman("exec", node.container, "sh", "-c",
                   "id admin >/dev/null 2>&1 || (useradd -m -s /bin/bash admin && echo admin:s3cret-pw | chpasswd && "
                   "mkdir -p /home/admin/.ssh && cp /root/.ssh/authorized_keys /home/admin/.ssh/ && "
                   "chown -R admin: /home/admin/.ssh && echo 'admin ALL=(ALL) ALL' > /etc/sudoers.d/admin && "
                   "chmod 0440 /etc/sudoers.d/admin)")
        entry = {"name": "needs-become", "host": node.address, "user": "admin",
                 "vars": {"ansible_ssh_private_key_file": status.admin_key,
                          "ansible_ssh_common_args": f"-o UserKnownHostsFile={status.known_hosts} "
                                                     "-o StrictHostKeyChecking=yes",
                          "ansible_become": True, "ansible_become_password": "s3cret-pw"}}
        (tmp_path / "nodes.yml").write_text(yaml.safe_dump({"nodes": [entry]}))
        config = write_jexida_config(tmp_path / "b.jexida.yml", tmp_path / "nodes.yml")
        async with bridge_session(config) as session:
            result = await call(session, "offload_to", command="id -un; echo to-stderr >&2; exit 5",
                                node_id="needs-become")
    finally:
        lab.down("pytest-become")
    assert (result["status"], result["rc"], result["stdout"], result["stderr"]) == ("failed", 5, "root", "to-stderr")


def warm_server_of(bridge: int) -> int:
    found = subprocess.run(["pgrep", "-P", str(bridge), "-f", "warm/forkserver.py"], capture_output=True, text=True,
                           check=False).stdout.split()
    assert found, "the bridge has no warm server"
    return int(found[0])


async def test_commands_run_warm_and_fall_back_when_its_server_dies(worker_lab: WorkerLab, lab_config: Path) -> None:
    node = worker_lab.nodes[0].name
    async with bridge_session(lab_config) as session:
        await call(session, "offload_to", command="true", node_id=node)  # the server starts with the bridge
        deadline = time.monotonic() + 20
        while not ran_warm(latest_runs()[0]) and time.monotonic() < deadline:
            await anyio.sleep(0.5)
            await call(session, "offload_to", command="true", node_id=node)
        assert ran_warm(latest_runs()[0])
        os.kill(warm_server_of(bridge_pids(lab_config)[0]), signal.SIGKILL)
        await anyio.sleep(1)  # dead, not dying: a call in the same instant still reaches its client
        result = await call(session, "offload_to", command="echo after-the-server-died", node_id=node)
        assert result["stdout"] == "after-the-server-died" and not ran_warm(latest_runs()[0])


async def test_warm_timeout_and_cancel_stop_the_command_on_the_node(worker_lab: WorkerLab, lab_config: Path) -> None:
    node = worker_lab.nodes[1]

    def running(marker: str) -> list[str]:
        return as_jexida(worker_lab, node, f"pgrep -f '^{marker}$' || true").stdout.split()

    async with bridge_client(lab_config) as client:
        await structured(client, "offload_to", command="true", node_id=node.name)
        await anyio.sleep(2)  # the warm server is up by now
        timed = await structured(client, "offload_to", command="sleep 3131", node_id=node.name, timeout_s=2)
        timed_run = latest_runs()[0]
        before = set(latest_runs(1000))
        with anyio.move_on_after(4) as scope:
            await client.call_tool("offload_to", {"command": "sleep 3132", "node_id": node.name})
        assert scope.cancelled_caught
        await anyio.sleep(0.5)  # (await, not block: the client sends the cancellation from this event loop)
        deadline = time.monotonic() + 5
        while (running("sleep 3131") or running("sleep 3132")) and time.monotonic() < deadline:
            await anyio.sleep(0.5)
    assert timed["status"] == "timeout" and ran_warm(timed_run)
    canceled_and_killer = [run for run in latest_runs(1000) if run not in before]
    assert len(canceled_and_killer) == 2 and all(ran_warm(run) for run in canceled_and_killer)
    assert running("sleep 3131") == [] and running("sleep 3132") == []
