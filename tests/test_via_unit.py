"""Nodes behind a bastion (`via`), without the lab: the registry's checks, the hop the plugin
composes (run through the real ssh and shell with a recording stand-in for the hop's ssh), the
probe's reading of its errors, and the plugin's host vars."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.errors import AnsibleParserError
from ansible.inventory.data import InventoryData
from ansible_collections.jexida.cluster.plugins.module_utils import registry
from ansible_collections.jexida.cluster.plugins.plugin_utils import jump, probe
from inventory_helpers import parse as parse_with_plugin
from inventory_helpers import write_config as write

import mcp_bridge  # noqa: F401  (the suite's ansible.cfg and Ansible's collection loader, before anything else)


def parse(config: Path) -> InventoryData:
    return parse_with_plugin(config, cache=False)[1]


BASTION_VARS = {"ansible_ssh_private_key_file": "/keys/controller", "ansible_ssh_common_args":
                "-o UserKnownHostsFile=/state/known_hosts -o StrictHostKeyChecking=yes"}


# --- the registry -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nodes", "message"),
    [
        ([{"name": "a", "via": 3}], "node #1 ('a'): 'via' must be the name of another node"),
        ([{"name": "a", "via": "a"}], "node #1 ('a'): 'via' names the node itself"),
        ([{"name": "b"}, {"name": "h", "via": "g"}, {"name": "g", "via": "b"}],
         "node #2 ('h'): 'via' names 'g', which is itself reached via 'b'; chains of bastions are not supported"),
    ],
)
def test_a_bad_via_in_a_registry_names_the_file_node_and_field(tmp_path: Path, nodes: list[Any], message: str) -> None:
    path = tmp_path / "nodes.yml"
    path.write_text(registry.yaml.safe_dump({"nodes": nodes}))
    with pytest.raises(registry.RegistryError) as err:
        registry.load_registry(str(path))
    assert str(err.value).startswith(f"{path}: {message}")


def test_upsert_keeps_clears_and_refuses_via(tmp_path: Path) -> None:
    path = str(tmp_path / "nodes.yml")
    registry.upsert_node(path, {"name": "b1", "host": "192.0.2.10"})
    _, hidden = registry.upsert_node(path, {"name": "h1", "host": "10.20.0.7", "via": "b1"})
    assert hidden["via"] == "b1"
    assert "via: b1" in Path(path).read_text()
    # An update that leaves via out keeps it; the bastion is not removed from under its node.
    assert registry.upsert_node(path, {"name": "h1", "tags": ["gpu"]})[1]["via"] == "b1"
    with pytest.raises(registry.RegistryError, match=r"node 'b1' is the bastion of 'h1'"):
        registry.remove_node(path, "b1")
    with pytest.raises(registry.RegistryError, match=r"'via' names 'h1', which is itself reached via 'b1'"):
        registry.upsert_node(path, {"name": "b1", "via": "h1"})
    # "" clears it, and a node without via is stored as before (no via key at all).
    changed, cleared = registry.upsert_node(path, {"name": "h1", "via": ""})
    assert changed and "via" not in cleared and "via" not in Path(path).read_text()
    assert registry.remove_node(path, "b1")


# --- the plugin's host vars and errors --------------------------------------------------------


def test_the_plugin_appends_the_hop_built_from_the_bastion_entry(tmp_path: Path) -> None:
    (tmp_path / "nodes.yml").write_text(registry.yaml.safe_dump({"nodes": [
        {"name": "h1", "host": "10.20.0.7", "via": "b1",
         "vars": {"ansible_ssh_common_args": "-o StrictHostKeyChecking=yes"}},
        {"name": "h2", "host": "10.20.0.8", "via": "b1"},
    ]}))
    config = write(tmp_path, f"""
        plugin: jexida.cluster.jexida
        probe: false
        nodes_file: nodes.yml
        nodes:
          - name: b1
            host: 192.0.2.10
            port: 2222
            vars: {BASTION_VARS}
    """)
    host_vars = {name: host.get_vars() for name, host in parse(config).hosts.items()}
    assert host_vars["h1"]["jexida_via"] == "b1" and "jexida_via" not in host_vars["b1"]
    assert host_vars["b1"]["ansible_ssh_common_args"] == BASTION_VARS["ansible_ssh_common_args"]
    args = shlex.split(host_vars["h1"]["ansible_ssh_common_args"])
    assert args[:2] == ["-o", "StrictHostKeyChecking=yes"]  # the node's own options first: ssh keeps the first
    assert args[2] == "-o" and args[3].startswith("ProxyCommand=") and len(args) == 4
    hop = shlex.split(args[3].removeprefix("ProxyCommand="))
    assert hop[-3:] == ["-W", "%h:%p", "192.0.2.10"]
    for option in ("Port=2222", "User=jexida", "IdentityFile=/keys/controller", "BatchMode=yes",
                   "UserKnownHostsFile=/state/known_hosts", "StrictHostKeyChecking=yes", "ControlMaster=no"):
        assert option in hop, option
    # A node with no ssh args of its own keeps the configured ones (none here) and gets only the hop.
    only_hop = shlex.split(host_vars["h2"]["ansible_ssh_common_args"])
    assert len(only_hop) == 2 and only_hop[0] == "-o" and only_hop[1].startswith("ProxyCommand=ssh "), only_hop


@pytest.mark.parametrize(
    ("nodes", "message"),
    [
        ("[{name: h1, via: nowhere}]",
         "(nodes:): node #1 ('h1'): 'via' names 'nowhere', which is not a node of this inventory (nodes: b1, h1)"),
        ("[{name: h1, via: b1, vars: {ansible_ssh_common_args: '-o ProxyJump=x'}}]",
         "(nodes:): node #1 ('h1'): 'via' and a ProxyJump in the node's ssh args both route the connection"),
        ("[{name: h1, via: c1}, {name: c1, vars: {ansible_connection: local}}]",
         "(nodes:): node #1 ('h1'): 'via' names 'c1', which uses ansible_connection=local"),
        ("[{name: h1, via: b1, vars: {ansible_connection: local}}]",
         "(nodes:): node #1 ('h1'): 'via' needs a node reached over SSH"),
    ],
)
def test_a_via_the_plugin_cannot_use_fails_with_the_file_and_node(tmp_path: Path, nodes: str, message: str) -> None:
    (tmp_path / "nodes.yml").write_text("nodes:\n  - {name: b1, host: 192.0.2.10}\n")
    config = write(tmp_path, f"""
        plugin: jexida.cluster.jexida
        probe: false
        nodes_file: nodes.yml
        nodes: {nodes}
    """)
    with pytest.raises(AnsibleParserError) as err:
        parse(config)
    assert f"{config} {message}" in str(err.value)


def test_a_chain_across_the_config_and_the_registry_is_refused(tmp_path: Path) -> None:
    (tmp_path / "nodes.yml").write_text("nodes:\n  - {name: g1, via: b1}\n")
    config = write(tmp_path, """
        plugin: jexida.cluster.jexida
        probe: false
        nodes_file: nodes.yml
        nodes: [{name: b1}, {name: h1, via: g1}]
    """)
    with pytest.raises(AnsibleParserError, match=r"\(nodes:\): node #2 \('h1'\): 'via' names 'g1', which is itself"):
        parse(config)


# --- the hop, through the real ssh and shell --------------------------------------------------

RECORDER = """\
#!/bin/sh
# Stands in for the hop's ssh: records its argv, one per line, and fails as a dead bastion would.
for arg; do printf '%s\\n' "$arg"; done > "{log}"
echo "ssh: connect to host $(eval echo \\${{$#}}) port 22: Connection refused" >&2
exit 255
"""


def test_the_hop_reaches_the_inner_ssh_word_for_word(tmp_path: Path) -> None:
    """ssh expands %-tokens in the ProxyCommand and runs it with the shell: a key path with a
    space and a '%', and a known_hosts path with a space, must arrive unchanged."""
    log = tmp_path / "hop.argv"
    recorder = tmp_path / "hop-ssh"
    recorder.write_text(RECORDER.format(log=log))
    recorder.chmod(0o755)
    key = str(tmp_path / "my key%d")
    bastion = registry.normalize_node({
        "name": "b1", "host": "bastion.invalid", "port": 2200, "user": "hopper",
        "vars": {"ansible_ssh_executable": str(recorder), "ansible_ssh_private_key_file": key,
                 "ansible_ssh_common_args": f"-o 'UserKnownHostsFile={tmp_path}/kh dir/known_hosts'"}}, "test")
    node = registry.normalize_node({"name": "h1", "host": "hidden.invalid", "port": 2222, "via": "b1",
                                    "vars": {"ansible_control_path_dir": str(tmp_path / "cp")}}, "test")
    node["vars"] = jump.via_connection_vars(node, bastion, {})
    target = probe.target_for_node(node, {})
    started = time.monotonic()
    facts = probe.probe_node(target, probe.ProbeSettings(retries=0, deadline=5))
    assert time.monotonic() - started < 5
    argv = log.read_text().splitlines()
    assert argv[-3:] == ["-W", "hidden.invalid:2222", "bastion.invalid"]
    assert f'IdentityFile="{key}"' in argv and f"UserKnownHostsFile={tmp_path}/kh dir/known_hosts" in argv
    assert "User=hopper" in argv and "Port=2200" in argv
    assert facts["reachable"] is False
    assert "ssh: connect to host bastion.invalid port 22: Connection refused" in facts["error"]


# --- the probe's errors -----------------------------------------------------------------------


def test_ssh_error_reason_prefers_the_hops_own_lines() -> None:
    stderr = ("channel 0: open failed: administratively prohibited: open failed\nstdio forwarding failed\n"
              "kex_exchange_identification: Connection closed by remote host\n"
              "Connection closed by UNKNOWN port 65535\n")
    assert probe.ssh_error_reason(stderr, 255) == (
        "channel 0: open failed: administratively prohibited: open failed; stdio forwarding failed")
    assert probe.ssh_error_reason("Connection closed by UNKNOWN port 65535\n", 255) == (
        "Connection closed by UNKNOWN port 65535")


def test_explain_jump_failure_names_the_hop_that_failed() -> None:
    down = {"reachable": False, "error": "ssh: connect to host 192.0.2.10 port 22: Connection refused"}
    assert probe.explain_jump_failure("x", "b1", down) == (
        "bastion 'b1' is unreachable: ssh: connect to host 192.0.2.10 port 22: Connection refused")
    refused = probe.explain_jump_failure("stdio forwarding failed", "b1", {"reachable": True})
    assert refused.startswith("stdio forwarding failed (through bastion 'b1', which answers)")
    assert "jexida_worker_allow_jump=true" in refused
    assert probe.explain_jump_failure("timed out", "b1", None) == "timed out (through bastion 'b1')"


FAKE_SSH = """\
#!/bin/sh
# Stands in for ssh by address (the next-to-last argument); a ProxyCommand is never run.
for arg; do address=$last; last=$arg; done
case $address in
  answers*) exec /bin/sh -s ;;
  denies*) echo "jexida@$address: Permission denied (publickey)." >&2; exit 255 ;;
  *) echo "ssh: connect to host $address port 22: Connection timed out" >&2; exit 255 ;;
esac
"""


@pytest.mark.parametrize(("bastion_host", "expected"), [
    ("denies-b", "bastion 'b1' is unreachable: jexida@denies-b: Permission denied (publickey)."),
    ("answers-b", "ssh: connect to host hidden-h port 22: Connection timed out (through bastion 'b1', which answers)"),
])
def test_a_silent_node_behind_a_bastion_says_whether_the_bastion_answered(
        tmp_path: Path, bastion_host: str, expected: str) -> None:
    ssh = tmp_path / "fake-ssh"
    ssh.write_text(FAKE_SSH)
    ssh.chmod(0o755)
    common = f"{{ansible_ssh_executable: {ssh}, ansible_control_path_dir: {tmp_path}/cp}}"
    config = write(tmp_path, f"""
        plugin: jexida.cluster.jexida
        retries: 0
        deadline: 5
        nodes:
          - {{name: b1, host: {bastion_host}, vars: {common}}}
          - {{name: h1, host: hidden-h, via: b1, vars: {common}}}
    """)
    facts = parse(config).get_host("h1").get_vars()["jexida_facts"]
    assert facts["reachable"] is False and facts["error"] == expected


def test_an_inactive_bastion_is_probed_only_to_explain(tmp_path: Path) -> None:
    ssh = tmp_path / "fake-ssh"
    ssh.write_text(FAKE_SSH)
    ssh.chmod(0o755)
    common = f"{{ansible_ssh_executable: {ssh}, ansible_control_path_dir: {tmp_path}/cp}}"
    config = write(tmp_path, f"""
        plugin: jexida.cluster.jexida
        retries: 0
        nodes:
          - {{name: b1, host: denies-b, active: false, vars: {common}}}
          - {{name: h1, host: hidden-h, via: b1, vars: {common}}}
    """)
    inventory = parse(config)
    assert inventory.get_host("h1").get_vars()["jexida_facts"]["error"].startswith("bastion 'b1' is unreachable")
    assert inventory.get_host("b1").get_vars()["jexida_facts"]["reachable"] is None  # still not probed


def test_the_probe_does_not_wait_for_a_hop_that_outlives_ssh(tmp_path: Path) -> None:
    """A ControlPersist master through a bastion keeps its ProxyCommand, which holds ssh's
    stderr open: the probe must return when ssh exits, not when that pipe closes."""
    pidfile = tmp_path / "hop.pid"
    program = f"sleep 30 </dev/null >/dev/null & echo $! > {pidfile}; echo answered"
    started = time.monotonic()
    try:
        rc, out, _ = probe._run(["/bin/sh", "-c", program], b"", timeout=20)
    finally:
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), signal.SIGTERM)
    assert (rc, out) == (0, b"answered\n")
    assert time.monotonic() - started < 3


def test_the_jump_args_filter_is_the_plugins_composition(tmp_path: Path) -> None:
    playbook = tmp_path / "play.yml"
    playbook.write_text(textwrap.dedent(f"""
        - hosts: localhost
          gather_facts: false
          tasks:
            - ansible.builtin.copy:
                content: "{{{{ bastion | jexida.cluster.jump_args }}}}"
                dest: {tmp_path}/hop
                mode: "0600"
              vars:
                bastion: {{name: b1, host: 192.0.2.10, vars: {{ansible_ssh_private_key_file: /keys/controller}}}}
            - ansible.builtin.debug:
                msg: "{{{{ {{'name': 'c', 'vars': {{'ansible_connection': 'local'}}}} | jexida.cluster.jump_args }}}}"
    """))
    run = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), str(playbook)], capture_output=True,
                         text=True, timeout=120, check=False, env={**os.environ, "ANSIBLE_NOCOLOR": "1"})
    expected = jump.jump_args({"name": "b1", "host": "192.0.2.10", "port": 22, "user": "jexida",
                               "vars": {"ansible_ssh_private_key_file": "/keys/controller"}},
                              probe.ansible_ssh_defaults())
    assert (tmp_path / "hop").read_text() == expected
    assert run.returncode != 0 and "which uses ansible_connection=local" in run.stdout + run.stderr


@pytest.mark.parametrize("field", ["via", "execution-node"])
def test_registering_through_a_node_the_plugin_would_refuse_is_refused_first(tmp_path: Path, field: str) -> None:
    """The CLI (and register_worker_node) check the named node as the inventory would, before writing."""
    from conftest import write_jexida_config
    from mcp_client import bridge_env

    registry = tmp_path / "nodes.yml"
    registry.write_text(yaml.safe_dump({"nodes": [
        {"name": "ctl", "host": "localhost", "vars": {"ansible_connection": "local"}},
        {"name": "b1", "host": "127.0.0.9"},
        {"name": "h1", "host": "10.20.0.7", "via": "b1"},
        {"name": "box", "host": "box", "vars": {"ansible_connection": "community.docker.docker"}}]}))
    config = write_jexida_config(tmp_path / "t.jexida.yml", registry, probe=False)
    before = registry.read_text()

    def add(name: str, through: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(Path(sys.executable).parent / "jexida"), "nodes", "add", name, "10.20.0.8",
                               f"--{field}", through, "--inventory", str(config)],
                              capture_output=True, text=True, timeout=120, env=bridge_env(), check=False)

    for through, said in (("ctl", "is on a local connection"), ("h1", "is itself reached through 'b1'"),
                          ("box", "uses ansible_connection=community.docker.docker"), ("b1x", "unknown node")):
        refused = add("x", through)
        assert refused.returncode == 3 and said in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
    assert registry.read_text() == before
    assert add("x", "b1").returncode == 0
