"""Execution nodes without a lab: the registry field, the grouping of a call's hosts, the worker-side vars."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible_collections.jexida.cluster.plugins.module_utils import node_spec, registry
from ansible_collections.jexida.cluster.plugins.plugin_utils.jump import probe_through
from ansible_collections.jexida.cluster.plugins.plugin_utils.probe import target_for_node
from inventory_helpers import parse, write_config

from mcp_bridge import exec_node, execution, settings
from mcp_bridge.execution import HostResult, RunOutcome, _run_groups

ROOT = Path(__file__).resolve().parents[1]


def _node(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "host": f"{name}.example", **fields}


@pytest.mark.parametrize(("nodes", "message"), [
    ([_node("a", execution_node="a")], "'execution_node' must be the name of another node"),
    ([_node("a", execution_node="x y")], "'execution_node' must be the name of another node"),
    ([_node("e"), _node("a", execution_node="e", via="e")], "'via' and 'execution_node' both"),
    ([_node("e", via="b"), _node("b"), _node("a", execution_node="e")], "must be reached directly"),
    ([_node("e", execution_node="f"), _node("f"), _node("a", execution_node="e")], "must be reached directly"),
])
def test_a_bad_execution_node_is_refused_with_the_node_and_field(nodes: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(registry.RegistryError, match=message):
        node_spec.validate_nodes(nodes, "nodes.yml")


def test_an_unknown_execution_node_is_an_error_only_for_the_whole_inventory() -> None:
    nodes = node_spec.validate_nodes([_node("a", execution_node="elsewhere")], "nodes.yml")  # may be inline
    assert nodes[0]["execution_node"] == "elsewhere"
    with pytest.raises(registry.RegistryError, match="'execution_node' names 'elsewhere', which is not a node"):
        node_spec.check_via([("nodes.yml", nodes)])


def test_upsert_keeps_and_clears_execution_node_and_remove_refuses_its_runner(tmp_path: Path) -> None:
    path = str(tmp_path / "nodes.yml")
    registry.upsert_node(path, _node("e"))
    registry.upsert_node(path, _node("a", execution_node="e"))
    registry.upsert_node(path, {"name": "a", "tags": ["x"]})
    assert registry.load_registry(path)[1]["execution_node"] == "e"
    with pytest.raises(registry.RegistryError, match="node 'e' is the execution node of 'a'"):
        registry.remove_node(path, "e")
    registry.upsert_node(path, {"name": "a", "execution_node": ""})
    assert "execution_node" not in registry.load_registry(path)[1]


def _conn(runner: str | None = None, key: str = "/keys/a", **more: Any) -> dict[str, Any]:
    conn = {"ansible_host": "10.0.0.1", "ansible_ssh_private_key_file": key, **more}
    if runner:
        conn[exec_node.EXECUTION_NODE_VAR] = {"name": runner, "host": runner, "vars": {}}
    return conn


def test_hosts_are_grouped_by_execution_node_and_key() -> None:
    hosts = {"d1": (_conn(), "l"), "d2": (_conn(key="/keys/b"), "l"), "h1": (_conn("e1"), "l"),
             "h2": (_conn("e1"), "l"), "h3": (_conn("e1", key="/keys/b"), "l"), "h4": (_conn("e2"), "l")}
    groups = exec_node.split_hosts(hosts)
    assert {k: sorted(v) for k, v in groups.items()} == {
        ("", ""): ["d1", "d2"], ("e1", "/keys/a"): ["h1", "h2"], ("e1", "/keys/b"): ["h3"], ("e2", "/keys/a"): ["h4"]}


def test_worker_side_vars_carry_no_controller_paths(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("10.0.0.1 ssh-ed25519 AAAA\n")
    conn = _conn("e1", ansible_ssh_common_args=f"-o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes",
                 ansible_ssh_extra_args='-o "UserKnownHostsFile=/nowhere/kh"')
    files: dict[str, str] = {}
    out = exec_node.worker_side(conn, "/tmp/jexida-worker-x", files)
    assert exec_node.EXECUTION_NODE_VAR not in out and "ansible_ssh_private_key_file" not in out
    assert out["ansible_ssh_common_args"] == ("-o UserKnownHostsFile=/tmp/jexida-worker-x/known_hosts_0 "
                                              "-o StrictHostKeyChecking=yes")
    assert out["ansible_ssh_extra_args"] == '-o "UserKnownHostsFile=/tmp/jexida-worker-x/known_hosts_1"'
    # A missing file travels empty: strict checking refuses there, as it would here.
    assert files == {"known_hosts_0": "10.0.0.1 ssh-ed25519 AAAA\n", "known_hosts_1": ""}


def test_the_worker_command_logs_in_as_ansible_would_and_starts_the_guard() -> None:
    runner = {"name": "e1", "host": "192.0.2.5", "port": 2222, "user": "jexida",
              "vars": {"ansible_ssh_private_key_file": "/keys/c"}, "worker_vars": {}}
    argv = exec_node.worker_command(runner, "/tmp/jexida-worker-x")
    assert argv[0] == "ssh" and "Port=2222" in argv and 'User="jexida"' in argv and "192.0.2.5" in argv
    bin_dir = f"{settings.EXEC_NODE_VENV}/bin"
    assert argv[-1] == (f"PATH={bin_dir}:$PATH exec {bin_dir}/python3 {bin_dir}/jexida-worker-guard "
                        "--private-data-dir /tmp/jexida-worker-x --delete")


def test_the_roles_venv_default_is_the_bridges() -> None:
    defaults = yaml.safe_load((ROOT / "roles/jexida_worker/defaults/main.yml").read_text())
    assert defaults["jexida_worker_runner_venv"] == settings.EXEC_NODE_VENV
    assert defaults["jexida_worker_execution_node"] is False


def test_the_probe_goes_through_the_execution_node_as_a_hop() -> None:
    target = target_for_node({"name": "h", "host": "10.0.0.9", "vars": {}})
    runner = target_for_node({"name": "e", "host": "192.0.2.5", "user": "jexida", "vars": {}})
    through = probe_through(target, runner)
    assert through.jump == runner and through.common_args[-2] == "-o"
    assert through.common_args[-1].startswith("ProxyCommand=ssh ") and "-W %h:%p 192.0.2.5" in through.common_args[-1]


def test_a_call_runs_direct_and_streamed_groups_and_merges_them(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def streamed(runner: dict[str, Any], hosts: dict[str, Any], **kwargs: Any) -> exec_node.StreamedRun:
        seen.append(f"{runner['name']}:{','.join(sorted(hosts))}")
        if runner["name"] == "down":
            return exec_node.StreamedRun(status="error", rc=None, duration_ms=5, artifact_dir="x",
                                         error="execution node 'down': Connection refused")
        for host in hosts:
            event = {"event": "runner_on_ok", "event_data": {"host": host, "res": {"rc": 0, "stdout": host}}}
            kwargs["on_event"](event)
        return exec_node.StreamedRun(status="successful", rc=0, duration_ms=7, artifact_dir="y")

    def direct(hosts: dict[str, Any], *, on_host: Any, **kwargs: Any) -> RunOutcome:
        seen.append(f"direct:{','.join(sorted(hosts))}")
        result = HostResult(host="d1", status="succeeded", rc=0, stdout="d1")
        on_host("d1", result)
        return RunOutcome(hosts={"d1": result}, runner_status="successful", runner_rc=0, duration_ms=3,
                          artifact_dir="z")

    monkeypatch.setattr(exec_node, "run_streamed", streamed)
    monkeypatch.setattr(execution, "run_scripts", direct)
    heard: list[str] = []
    hosts = {"d1": (_conn(), "l"), "h1": (_conn("e1"), "l"), "h2": (_conn("down"), "l")}
    outcome = _run_groups(exec_node.split_hosts(hosts), timeout_s=5,
                          on_host=lambda host, result: heard.append(host), give_up=None)
    assert sorted(seen) == ["direct:d1", "down:h2", "e1:h1"] and sorted(heard) == ["d1", "h1"]
    assert outcome.hosts["d1"].stdout == "d1"
    assert outcome.hosts["h1"] == HostResult(host="h1", status="succeeded", rc=0, stdout="h1", stdout_bytes=2,
                                             result={"rc": 0})
    assert outcome.hosts["h2"].status == "unreachable" and "Connection refused" in outcome.hosts["h2"].msg
    assert outcome.runner_status == "error" and "Connection refused" in outcome.error


def test_an_unreadable_key_is_a_result_naming_the_execution_node() -> None:
    run = exec_node.run_streamed({"name": "e1", "host": "127.0.0.1", "vars": {}},
                                 {"h1": (_conn("e1", key="/nonexistent/key"), "true")},
                                 module="ansible.builtin.raw", module_args="true", timeout_s=5, on_event=lambda e: True)
    assert run.status == "error" and run.error.startswith("execution node 'e1': cannot build the job"), run


def test_an_execution_node_that_refuses_the_connection_says_so(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("not a key\n")
    runner = {"name": "e1", "host": "127.0.0.1", "port": 1, "user": "nobody", "vars": {}, "worker_vars": {}}
    run = exec_node.run_streamed(runner, {"h1": (_conn("e1", key=str(key)), "true")}, module="ansible.builtin.raw",
                                 module_args="true", timeout_s=5, on_event=lambda e: True)
    assert run.status == "error" and run.error.startswith("execution node 'e1': "), run
    assert "Connection refused" in run.error, run.error


def test_the_plugin_sets_the_host_var_and_gives_a_tag_group_its_execution_node(tmp_path: Path) -> None:

    config = write_config(tmp_path, """
        plugin: jexida.cluster.jexida
        probe: false
        execution_nodes: {site2: e1}
        nodes:
          - {name: e1, host: 192.0.2.20, tags: [site2]}
          - {name: w1, host: 10.30.0.7, tags: [site2]}
          - {name: w2, host: 10.30.0.8, tags: [site2], execution_node: e2}
          - {name: e2, host: 192.0.2.21}
          - {name: w3, host: 10.30.0.9, execution_node: e2}
          - {name: d1, host: 192.0.2.30}
    """)
    host_vars = {name: host.get_vars() for name, host in parse(config, cache=False)[1].hosts.items()}
    assert {name: v.get("jexida_execution_node") for name, v in host_vars.items()} == {
        "e1": None, "w1": "e1", "w2": "e2", "e2": None, "w3": "e2", "d1": None}
    assert "ProxyCommand" not in str(host_vars["w1"].get("ansible_ssh_common_args"))  # the hop is the probe's only


def test_a_local_execution_node_is_refused_by_the_plugin(tmp_path: Path) -> None:
    from ansible.errors import AnsibleParserError

    config = write_config(tmp_path, """
        plugin: jexida.cluster.jexida
        probe: false
        nodes:
          - {name: e1, vars: {ansible_connection: local}}
          - {name: w1, execution_node: e1}
    """)
    with pytest.raises(AnsibleParserError, match="'execution_node' names 'e1', which uses ansible_connection=local"):
        parse(config, cache=False)


def test_the_hosts_of_a_job_share_one_copy_of_a_known_hosts_file(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("".join(f"10.0.0.{i} ssh-ed25519 AAAA\n" for i in range(50)))
    files: dict[str, str] = {}
    shipped: dict[str, str] = {}
    outs = [exec_node.worker_side(_conn("e1", ansible_ssh_common_args=f"-o UserKnownHostsFile={known}"),
                                  "/w", files, shipped) for _ in range(20)]
    assert list(files) == ["known_hosts_0"]
    assert {out["ansible_ssh_common_args"] for out in outs} == {"-o UserKnownHostsFile=/w/known_hosts_0"}


def test_a_host_without_its_own_key_uses_ansibles_configured_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exec_node, "_ssh_defaults", lambda: {"private_key_file": "/keys/from-ansible-cfg"})
    keyless = {"ansible_host": "10.0.0.1", exec_node.EXECUTION_NODE_VAR: {"name": "e1", "host": "e1", "vars": {}}}
    assert exec_node.private_key(keyless) == "/keys/from-ansible-cfg"
    assert exec_node.private_key(_conn("e1")) == "/keys/a"
    assert exec_node.split_hosts({"h": (keyless, "l")}) == {("e1", "/keys/from-ansible-cfg"): {"h": (keyless, "l")}}


def test_a_broadcast_through_an_execution_node_ships_its_script_once(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    key = tmp_path / "key"
    key.write_text("not a key\n")
    streams: list[bytes] = []
    real_transmit = exec_node.transmit

    def measured(*args: Any, **kwargs: Any) -> bytes:
        streams.append(real_transmit(*args, **kwargs))
        return streams[-1]

    monkeypatch.setattr(exec_node, "transmit", measured)
    script = "echo " + base64.b64encode(os.urandom(75_000)).decode()  # 100 kB the stream's zip cannot shrink
    hosts = {f"w{i}": (_conn("e1", key=str(key)), script) for i in range(50)}
    runner = {"name": "e1", "host": "127.0.0.1", "port": 1, "user": "nobody", "vars": {}, "worker_vars": {}}
    run = exec_node.run_streamed(runner, hosts, module="ansible.builtin.raw", module_args="true", timeout_s=5,
                                 on_event=lambda e: True)
    assert "Connection refused" in run.error, run  # the job was built and sent; port 1 refuses it
    assert len(streams) == 1 and len(streams[0]) < 2 * len(script), len(streams[0])  # 50 copies before



def test_bad_quoting_in_ssh_args_is_a_result_not_a_traceback(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("not a key\n")
    host = _conn("e1", key=str(key), ansible_ssh_common_args="-o 'unclosed")
    assert exec_node.split_hosts({"h1": (host, "true")}) == {("e1", str(key)): {"h1": (host, "true")}}
    runner = {"name": "e1", "host": "127.0.0.1", "vars": {"ansible_ssh_common_args": "-o 'unclosed"},
              "worker_vars": {}}
    run = exec_node.run_streamed(runner, {"h1": (host, "true")}, module="ansible.builtin.raw", module_args="true",
                                 timeout_s=5, on_event=lambda e: True)
    assert run.status == "error" and "cannot build the job: No closing quotation" in run.error, run
    assert "private key" not in run.error
