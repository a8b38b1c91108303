"""A worker behind a bastion, on real lab nodes: the host cannot reach it, and everything still works.

The lab (`lab.up(..., hidden=1)`): node1 is published on a loopback address and also sits on an
internal podman network; hidden1 sits only on that network and accepts packets from the bastion
alone. One bootstrap run makes both workers (the bastion with jexida_worker_allow_jump, limited
to hidden1's sshd) and registers hidden1 with `via: <node1>`; every tool below reaches hidden1
through the bastion with no code of its own, from the composed ssh args.
"""

from __future__ import annotations

import ipaddress
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
from conftest import ansible_cli, run_bootstrap, write_jexida_config
from mcp_client import bridge_client, bridge_env, bridge_session, call, structured

import jexida_lab as lab

pytestmark = [pytest.mark.integration]

BASTION_LAB = "pytest-bastion"


@dataclass
class BastionLab:
    status: lab.LabStatus
    bastion: lab.LabNode
    hidden: lab.LabNode
    admin_hop: list[str]  # the admin inventory's ssh args for hidden1 (root, through the bastion)
    registry: Path
    config: Path
    bootstrap: subprocess.CompletedProcess[str]

    def on_hidden(self, command: str) -> subprocess.CompletedProcess[str]:
        """Run a command on hidden1 as root through the bastion, over plain ssh (not the bridge)."""
        argv = ["ssh", "-i", self.status.admin_key, "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
                *self.admin_hop, f"root@{self.hidden.address}", command]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(scope="session")
def bastion_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BastionLab]:
    """node1 (bastion) and hidden1 (only node1 reaches it), bootstrapped in one run."""
    status = lab.up(BASTION_LAB, nodes=1, hidden=1)
    bastion, hidden = status.nodes
    work = tmp_path_factory.mktemp("bastion")
    inventory = yaml.safe_load(Path(status.inventory).read_text())
    hosts = inventory["all"]["children"][f"lab_{BASTION_LAB.replace('-', '_')}"]["hosts"]
    hosts[bastion.name]["jexida_tags"] = ["bastion"]
    hosts[hidden.name]["jexida_tags"] = ["behind"]
    admin_inventory = work / "inventory.yml"
    admin_inventory.write_text(yaml.safe_dump(inventory))
    registry = work / "nodes.yml"
    run = run_bootstrap(admin_inventory, "-e", f"jexida_registry={registry}")
    yield BastionLab(status=status, bastion=bastion, hidden=hidden,
                     admin_hop=shlex.split(hosts[hidden.name]["ansible_ssh_common_args"]), registry=registry,
                     config=write_jexida_config(work / "bastion.jexida.yml", registry), bootstrap=run)
    lab.down(BASTION_LAB)


def test_bootstrap_made_both_workers_and_registered_the_hop(bastion_lab: BastionLab) -> None:
    run = bastion_lab.bootstrap
    assert run.returncode == 0, run.stdout[-3000:]
    for node in (bastion_lab.bastion, bastion_lab.hidden):
        assert f"{node.name}: worker ready, python 3." in run.stdout
    entries = {e["name"]: e for e in yaml.safe_load(bastion_lab.registry.read_text())["nodes"]}
    assert entries[bastion_lab.hidden.name]["via"] == bastion_lab.bastion.name
    assert entries[bastion_lab.hidden.name]["host"] == bastion_lab.hidden.address
    assert "ProxyCommand" not in json.dumps(entries)  # the registry holds `via`; the hop is composed
    assert "via" not in entries[bastion_lab.bastion.name]
    assert entries[bastion_lab.bastion.name]["vars"]["jexida_worker_allow_jump"] is True
    assert entries[bastion_lab.bastion.name]["vars"]["jexida_worker_jump_permit_open"] == [
        f"{bastion_lab.hidden.address}:22"]
    # The bastion's worker user may open `ssh -W` channels, and only to hidden1's sshd.
    sshd = bastion_lab.on_hidden("true")  # (admin access still works through the bastion)
    assert sshd.returncode == 0, sshd.stderr
    effective = lab.podman("exec", bastion_lab.bastion.container, "/usr/sbin/sshd", "-T", "-C",
                           "user=jexida,host=controller,addr=127.0.0.1")
    assert "allowtcpforwarding local" in effective
    assert f"permitopen {bastion_lab.hidden.address}:22" in effective


def test_the_host_cannot_reach_the_hidden_worker_directly(bastion_lab: BastionLab) -> None:
    hidden = bastion_lab.hidden
    # The node is up: its bastion gets sshd's greeting ...
    assert lab.hidden.answers_via(bastion_lab.bastion.container, hidden.address)
    # ... and the host gets nothing: the connection times out (or is refused), within seconds.
    started = time.monotonic()
    with pytest.raises(OSError), socket.create_connection((hidden.address, 22), timeout=3) as sock:
        sock.recv(4)
    assert time.monotonic() - started < 5
    direct = subprocess.run(["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=3", "-o",
                             "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                             f"jexida@{hidden.address}", "true"], capture_output=True, text=True, timeout=15,
                            check=False)
    assert direct.returncode == 255 and "timed out" in direct.stderr.lower(), direct.stderr
    # Plain Ansible, from the jexida inventory, goes through the bastion.
    ran = ansible_cli("ansible", "-i", str(bastion_lab.config), hidden.name, "-m", "command", "-a", "hostname")
    assert ran.returncode == 0 and hidden.name in ran.stdout.split("\n", 1)[1], ran.stdout + ran.stderr


async def _every_tool(bastion_lab: BastionLab) -> dict[str, dict]:
    hidden = bastion_lab.hidden.name
    seen: dict[str, dict] = {}
    async with bridge_session(bastion_lab.config) as session:
        seen["check"] = await call(session, "check_worker_node", name=hidden, detailed=True)
        seen["status"] = await call(session, "cluster_status")
        seen["offload"] = await call(session, "offload_to", command="hostname; id -un", node_id=hidden)
        seen["routed"] = await call(session, "cluster_bash", command="hostname", requires_tags=["behind"])
        job = await call(session, "submit_job", command="for i in 1 2 3; do echo tick $i; sleep 1; done",
                         node_name=hidden, wait_s=1)
        deadline = time.monotonic() + 60
        while (await call(session, "get_job", job_id=job["job_id"]))["status"] == "running":
            assert time.monotonic() < deadline, "the job behind the bastion never finished"
            await anyio.sleep(1)
        seen["job"] = await call(session, "get_job", job_id=job["job_id"])
        seen["output"] = await call(session, "job_output", job_id=job["job_id"], tail=2)
        long = await call(session, "submit_job", command="sleep 621 & sleep 622; wait", node_name=hidden, wait_s=1)
        seen["running"] = {"pids": (await anyio.to_thread.run_sync(
            bastion_lab.on_hidden, "pgrep -fc 'sleep 62[12]'")).stdout.strip()}
        seen["cancel"] = await call(session, "cancel_job", job_id=long["job_id"])
    return seen


@pytest.mark.anyio
async def test_every_tool_reaches_the_hidden_worker_through_the_bastion(bastion_lab: BastionLab) -> None:
    hidden = bastion_lab.hidden
    seen = await _every_tool(bastion_lab)
    check = seen["check"]
    assert check["reachable"] is True and check["address"] == hidden.address, check
    assert check["job_dirs_writable"] is True and check["python_version"].startswith("3.")
    health = {n["name"]: n["health"] for n in seen["status"]["nodes"]}
    assert health == {bastion_lab.bastion.name: "available", hidden.name: "available"}
    assert seen["offload"]["status"] == "succeeded"
    assert seen["offload"]["stdout"].split() == [hidden.name, "jexida"]
    routed = seen["routed"]
    assert routed["node"] == hidden.name and routed["stdout"].strip() == hidden.name, routed["routing"]
    assert seen["job"]["status"] == "succeeded" and seen["job"]["node"] == hidden.name
    assert seen["output"]["data"].split() == ["tick", "2", "tick", "3"]
    assert seen["running"]["pids"] == "2"
    assert seen["cancel"]["canceled"] is True and seen["cancel"]["status"] == "canceled"
    left = bastion_lab.on_hidden("pgrep -f 'sleep 62[12]' || echo none")
    assert left.stdout.strip() == "none", "the canceled job still runs on the hidden node"


@pytest.mark.anyio
async def test_a_canceled_call_stops_the_command_behind_the_bastion(bastion_lab: BastionLab) -> None:
    hidden = bastion_lab.hidden
    marker = f"sleep {secrets.randbelow(90000) + 410000}"  # unique: the audit log outlives test sessions
    async with bridge_client(bastion_lab.config) as client:
        with anyio.move_on_after(6) as scope:
            await client.call_tool("offload_to", {"command": f"{marker}; echo never", "node_id": hidden.name})
        assert scope.cancelled_caught

        def still_running() -> list[str]:
            return bastion_lab.on_hidden(f"pgrep -f '^{marker}$' || true").stdout.split()

        # Never block the event loop here: the client sends its cancel notification from it.
        running = await anyio.to_thread.run_sync(still_running)
        deadline = time.monotonic() + 10
        while running and time.monotonic() < deadline:
            await anyio.sleep(0.5)
            running = await anyio.to_thread.run_sync(still_running)
        after = await structured(client, "offload_to", command="echo still-serving", node_id=hidden.name)
    assert running == [], f"{marker} still runs on {hidden.name} 10 s after the cancel: {running}"
    assert after["stdout"].strip() == "still-serving"


def _variant(bastion_lab: BastionLab, tmp_path: Path, **changes: dict[str, object]) -> Path:
    """A copy of the registry with some fields of some nodes changed, and its inventory config."""
    document = yaml.safe_load(bastion_lab.registry.read_text())
    for entry in document["nodes"]:
        entry.update(changes.get(entry["name"], {}))
    registry = tmp_path / "nodes.yml"
    registry.write_text(yaml.safe_dump(document))
    return write_jexida_config(tmp_path / "variant.jexida.yml", registry)


def _facts(config: Path, node: str) -> dict:
    listed = ansible_cli("ansible-inventory", "-i", str(config), "--host", node)
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)["jexida_facts"]


def test_a_silent_bastion_is_named_in_the_hidden_nodes_error(bastion_lab: BastionLab, tmp_path: Path) -> None:
    # The bastion's entry points at a port where nothing listens: the hop itself fails.
    config = _variant(bastion_lab, tmp_path, **{bastion_lab.bastion.name: {"port": 1}})
    facts = _facts(config, bastion_lab.hidden.name)
    assert facts["reachable"] is False
    assert facts["error"].startswith(f"bastion '{bastion_lab.bastion.name}' is unreachable: ")
    assert "Connection refused" in facts["error"], facts["error"]


def test_a_destination_outside_permit_open_is_refused_by_the_bastion(bastion_lab: BastionLab,
                                                                     tmp_path: Path) -> None:
    config = _variant(bastion_lab, tmp_path, **{bastion_lab.hidden.name: {"port": 2222}})
    facts = _facts(config, bastion_lab.hidden.name)
    assert facts["reachable"] is False
    assert f"(through bastion '{bastion_lab.bastion.name}', which answers)" in facts["error"], facts["error"]
    assert "jexida_worker_allow_jump=true" in facts["error"]


def test_jexida_provision_dry_run_through_the_bastion(bastion_lab: BastionLab, tmp_path: Path) -> None:
    """Both nodes registered as root with the admin key (fresh servers, as `jexida nodes add --user root`
    makes them): each dry run runs the bootstrap through ansible-runner in check mode, the hidden
    node's through the bastion. The bastion keeps its jump option (recorded at registration), so
    its sshd drop-in and keys would not change."""
    entries = {e["name"]: e for e in yaml.safe_load(bastion_lab.registry.read_text())["nodes"]}
    as_root = {name: {"user": "root", "vars": {**entry["vars"],
                                               "ansible_ssh_private_key_file": bastion_lab.status.admin_key}}
               for name, entry in entries.items()}
    config = _variant(bastion_lab, tmp_path, **as_root)
    before = (tmp_path / "nodes.yml").read_text()
    results = {}
    for node in (bastion_lab.hidden, bastion_lab.bastion):
        dry = subprocess.run([str(Path(sys.executable).parent / "jexida"), "provision", node.name,
                              "--inventory", str(config), "--json"], capture_output=True, text=True, timeout=600,
                             env=bridge_env(), check=False)
        assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-2000:]
        results[node.name] = json.loads(dry.stdout)
    hidden = {t["task"]: t["status"] for t in results[bastion_lab.hidden.name]["tasks"]}
    assert results[bastion_lab.hidden.name]["dry_run"] is True
    assert hidden["Check the bastion this node is reached through (jexida_via)"] == "ok", hidden
    assert hidden["Create the worker user (no password, key login only)"] == "ok", hidden
    bastion = {t["task"]: t["status"] for t in results[bastion_lab.bastion.name]["tasks"]}
    assert bastion["Check the bastion this node is reached through (jexida_via)"] == "skipped"
    assert bastion["Restrict the worker's SSH sessions (no passwords, no forwarding)"] == "ok", bastion
    assert bastion["Install the authorized keys"] == "ok", bastion
    assert (tmp_path / "nodes.yml").read_text() == before  # a dry run registers nothing


def test_jexida_nodes_add_via_checks_the_bastion_and_shows_it(bastion_lab: BastionLab, tmp_path: Path) -> None:
    config = _variant(bastion_lab, tmp_path)

    def jexida(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(Path(sys.executable).parent / "jexida"), *argv, "--inventory", str(config)],
                              capture_output=True, text=True, timeout=120, env=bridge_env(), check=False)

    address = str(ipaddress.ip_address(bastion_lab.hidden.address) + 1)  # on the hidden network, unused
    refused = jexida("nodes", "add", "extra", address, "--via", "no-such-bastion")
    assert refused.returncode == 3 and "'via': unknown node 'no-such-bastion'" in refused.stderr, refused.stderr
    assert "extra" not in (tmp_path / "nodes.yml").read_text()
    added = jexida("nodes", "add", "extra", address, "--via", bastion_lab.bastion.name)
    assert added.returncode == 0, added.stderr
    shown = json.loads(jexida("nodes", "show", "extra").stdout)
    assert shown["via"] == bastion_lab.bastion.name and shown["facts"]["reachable"] is False
    # The bastion answers but refuses this destination (not in its PermitOpen): the error says so.
    assert f"through bastion '{bastion_lab.bastion.name}', which answers" in shown["facts"]["error"]
    assert "jexida_worker_allow_jump=true" in shown["facts"]["error"], shown["facts"]["error"]
