"""The jexida inventory plugin, without the lab.

The plugin runs on a real InventoryData and DataLoader (as in ansible-core's own
test_constructed.py); only the network part of the probe is replaced where a test needs
made-up load, and the controller node is probed for real on this machine.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from ansible.errors import AnsibleParserError
from conftest import ansible_cli
from inventory_helpers import host_vars, made_up_facts, members, new_plugin, parse, write_config

import mcp_bridge  # noqa: F401  (the suite's ansible.cfg and Ansible's collection loader, before anything else)

# The plugin reads JEXIDA_INVENTORY_* and ANSIBLE_INVENTORY_CACHE: a developer's shell must not change the tests.
pytestmark = pytest.mark.usefixtures("no_stray_env")

# --- groups, vars, constructed ----------------------------------------------------------------


def test_groups_from_tags_facts_and_activity(tmp_path: Path, fake_probe: Callable[..., list[list[str]]]) -> None:
    calls = fake_probe(
        gpu1=made_up_facts(capabilities=["gpu", "docker"], load_per_cpu=0.1),
        mac1=made_up_facts(os="darwin", arch="arm64", load_per_cpu=0.8, cpu_busy_pct=None),
        down1={"reachable": False, "error": "ssh: connect to host 10.0.0.9 port 22: Connection refused"},
    )
    path = write_config(tmp_path, """
        plugin: jexida.cluster.jexida
        nodes:
          - {name: gpu1, host: 127.0.0.21, tags: [gpu, build]}
          - {name: mac1, host: 127.0.0.22, port: 2222, user: me, tags: [mac]}
          - {name: down1, host: 127.0.0.23, tags: [gpu]}
          - {name: spare1, host: 127.0.0.24, tags: [gpu], active: false}
    """)
    _, inventory = parse(path)

    assert calls == [["gpu1", "mac1", "down1"]], "inactive nodes are never probed"
    assert members(inventory, "tag_gpu") == {"gpu1", "down1", "spare1"}
    assert members(inventory, "tag_build") == {"gpu1"}
    assert members(inventory, "os_linux") == {"gpu1"}
    assert members(inventory, "os_darwin") == {"mac1"}
    assert members(inventory, "arch_arm64") == {"mac1"}
    assert members(inventory, "cap_gpu") == {"gpu1"}
    assert members(inventory, "cap_docker") == {"gpu1"}
    assert members(inventory, "load_idle") == {"gpu1"}
    assert members(inventory, "load_busy") == {"mac1"}
    assert members(inventory, "available") == {"gpu1", "mac1"}
    assert members(inventory, "unreachable") == {"down1"}
    assert members(inventory, "inactive") == {"spare1"}
    assert members(inventory, "load_overloaded") == set()  # exists even when empty

    mac = host_vars(inventory, "mac1")
    assert (mac["ansible_host"], mac["ansible_port"], mac["ansible_user"]) == ("127.0.0.22", 2222, "me")
    assert mac["jexida_tags"] == ["mac"] and mac["jexida_active"] is True
    assert mac["jexida_facts"]["load_group"] == "busy"
    down = host_vars(inventory, "down1")["jexida_facts"]
    assert down["reachable"] is False and "Connection refused" in down["error"] and down["load_group"] is None
    spare = host_vars(inventory, "spare1")
    assert spare["jexida_active"] is False and spare["jexida_facts"]["reachable"] is None


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        ({"load_per_cpu": 0.0}, "idle"),
        ({"load_per_cpu": 0.19}, "idle"),
        ({"load_per_cpu": 0.2}, "normal"),
        ({"load_per_cpu": 0.69}, "normal"),
        ({"load_per_cpu": 0.7}, "busy"),
        ({"load_per_cpu": 0.99, "cpu_busy_pct": 100.0}, "busy"),
        ({"load_per_cpu": 1.0, "cpu_busy_pct": 40.0}, "overloaded"),
        ({"load_per_cpu": 1.0, "cpu_busy_pct": 39.9}, "busy"),  # load lags: CPU says it is done
        ({"load_per_cpu": 3.0, "cpu_busy_pct": None}, "overloaded"),  # no CPU sample (macOS): load decides
        ({"load_per_cpu": 0.1, "mem_used_pct": 80.0}, "overloaded"),
        ({"load_per_cpu": 0.1, "mem_used_pct": 79.9}, "idle"),
        ({"load_per_cpu": None, "load_1": 2.0, "cpus": 4}, "normal"),  # computed from load_1 / cpus
        ({"load_per_cpu": None, "load_1": None, "cpus": None}, "normal"),
    ],
)
def test_classify_load_edges(jexida: ModuleType, facts: dict[str, Any], expected: str) -> None:
    base = {"mem_used_pct": 10.0, "cpu_busy_pct": 90.0}
    assert jexida.classify_load({**base, **facts}, jexida.DEFAULT_THRESHOLDS) == expected


@pytest.mark.parametrize(
    ("load_per_cpu", "group"),
    [(0.04, "load_idle"), (0.05, "load_normal"), (0.49, "load_normal"), (0.5, "load_busy"), (0.9, "load_overloaded")],
)
def test_configured_thresholds_move_the_edges(tmp_path: Path, fake_probe: Callable[..., list[list[str]]],
                                              load_per_cpu: float, group: str) -> None:
    fake_probe(n1=made_up_facts(load_per_cpu=load_per_cpu, cpu_busy_pct=95.0))
    path = write_config(tmp_path, """
        plugin: jexida.cluster.jexida
        nodes: [{name: n1, host: 127.0.0.21}]
        thresholds: {idle_load_per_cpu: 0.05, busy_load_per_cpu: 0.5, overloaded_load_per_cpu: 0.9}
    """)
    _, inventory = parse(path)
    load_groups = {g for g in ("load_idle", "load_normal", "load_busy", "load_overloaded")
                   if "n1" in members(inventory, g)}
    assert load_groups == {group}
    assert ("n1" in members(inventory, "available")) == (group != "load_overloaded")


def test_documented_threshold_defaults_are_the_code_defaults(jexida: ModuleType) -> None:
    documented = yaml.safe_load(jexida.DOCUMENTATION)["options"]["thresholds"]["default"]
    assert {k: float(v) for k, v in documented.items()} == jexida.DEFAULT_THRESHOLDS


def test_compose_groups_and_keyed_groups(tmp_path: Path, fake_probe: Callable[..., list[list[str]]]) -> None:
    fake_probe(
        big=made_up_facts(cpus=16, running_jobs=3, mem_total_mb=131072, distribution="ubuntu"),
        small=made_up_facts(cpus=2, running_jobs=0, mem_total_mb=2048, distribution="debian"),
    )
    path = write_config(tmp_path, """
        plugin: jexida.cluster.jexida
        nodes:
          - {name: big, host: 127.0.0.31, vars: {rack: r1}}
          - {name: small, host: 127.0.0.32, vars: {rack: r2}}
        compose:
          free_slots: jexida_facts.cpus - jexida_facts.running_jobs
        groups:
          big_memory: jexida_facts.mem_total_mb >= 65536
        keyed_groups:
          - {key: jexida_facts.distribution, prefix: distro}
          - {key: rack, prefix: rack}
    """)
    _, inventory = parse(path)
    assert host_vars(inventory, "big")["free_slots"] == 13
    assert host_vars(inventory, "small")["free_slots"] == 2
    assert members(inventory, "big_memory") == {"big"}
    assert members(inventory, "distro_ubuntu") == {"big"}
    assert members(inventory, "distro_debian") == {"small"}
    assert members(inventory, "rack_r1") == {"big"}


def test_tags_that_are_not_group_names_are_sanitized_with_one_warning(
    tmp_path: Path, fake_probe: Callable[..., list[list[str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_probe()
    warnings: list[str] = []
    plugin = new_plugin()
    monkeypatch.setattr(plugin.display, "warning", lambda msg, *a, **k: warnings.append(str(msg)))
    path = write_config(tmp_path, """
        plugin: jexida.cluster.jexida
        nodes:
          - {name: a, host: 127.0.0.41, tags: [gpu-large, fast]}
          - {name: b, host: 127.0.0.42, tags: [gpu-large, x.y]}
    """)
    _, inventory = parse(path)
    assert members(inventory, "tag_gpu_large") == {"a", "b"}
    assert members(inventory, "tag_x_y") == {"b"}
    assert members(inventory, "tag_fast") == {"a"}
    assert len(warnings) == 1, warnings
    assert "'gpu-large' -> tag_gpu_large" in warnings[0] and "'x.y' -> tag_x_y" in warnings[0]
    assert "fast" not in warnings[0]


def test_verify_file_takes_only_jexida_files(tmp_path: Path) -> None:
    plugin = new_plugin()
    for name, ok in (("a.jexida.yml", True), ("a.jexida.yaml", True), ("a.yml", False),
                     ("jexida.yml", False), ("a.jexida.yml.bak", False)):
        (tmp_path / name).write_text("plugin: jexida.cluster.jexida\n")
        assert plugin.verify_file(str(tmp_path / name)) is ok, name


# --- bad configs ------------------------------------------------------------------------------

BAD_CONFIGS = {
    "malformed config YAML": ("plugin: jexida.cluster.jexida\nnodes: [\n", None, ["{config}", "YAML"]),
    "malformed registry YAML": ("plugin: jexida.cluster.jexida\nnodes_file: nodes.yml\n", "nodes:\n  - name: [a\n",
                                ["{registry}", "malformed YAML"]),
    "missing name": ("plugin: jexida.cluster.jexida\nnodes:\n  - {host: 127.0.0.5}\n", None,
                     ["{config}", "node #1", "'name' is required"]),
    "missing name in registry": ("plugin: jexida.cluster.jexida\nnodes_file: nodes.yml\n",
                                 "nodes:\n  - name: a\n  - host: 127.0.0.5\n", ["{registry}", "node #2", "'name'"]),
    "duplicate names": ("plugin: jexida.cluster.jexida\nnodes_file: nodes.yml\n",
                        "nodes:\n  - name: gpu1\n  - name: gpu1\n", ["{registry}", "node #2 ('gpu1')", "duplicate"]),
    "duplicate across nodes and nodes_file": (
        "plugin: jexida.cluster.jexida\nnodes_file: nodes.yml\nnodes: [{name: a}]\n",
        "nodes:\n  - name: a\n", ["{config}", "'a'", "nodes_file"]),
    "non-string tag": ("plugin: jexida.cluster.jexida\nnodes_file: nodes.yml\n",
                       "nodes:\n  - name: a\n  - name: gpu1\n    tags: [gpu, 3]\n",
                       ["{registry}", "node #2 ('gpu1')", "'tags' must be a list of strings", "int"]),
    "tags not a list": ("plugin: jexida.cluster.jexida\nnodes:\n  - {name: gpu1, tags: 3}\n", None,
                        ["{config}", "node #1 ('gpu1')", "'tags'", "got int"]),
    "unknown option": ("plugin: jexida.cluster.jexida\nnodez: []\n", None, ["{config}", "unknown option", "'nodez'"]),
    "unknown node key": ("plugin: jexida.cluster.jexida\nnodes:\n  - {name: a, hots: x}\n", None,
                         ["{config}", "node #1 ('a')", "'hots'"]),
    "bad port": ("plugin: jexida.cluster.jexida\nnodes:\n  - {name: a, port: 70000}\n", None,
                 ["{config}", "'port'", "65535"]),
    "reserved var": ("plugin: jexida.cluster.jexida\nnodes:\n  - {name: a, vars: {ansible_host: x}}\n", None,
                     ["{config}", "ansible_host", "'host' field"]),
    "not a bool": ("plugin: jexida.cluster.jexida\nprobe: maybe\n", None, ["{config}", "'probe'", "true or false"]),
    "bad threshold": ("plugin: jexida.cluster.jexida\nthresholds: {busy_load_per_cpu: 5}\n", None,
                      ["{config}", "busy_load_per_cpu"]),
    "unknown threshold": ("plugin: jexida.cluster.jexida\nthresholds: {busy: 0.5}\n", None,
                          ["{config}", "thresholds.busy"]),
    "zero deadline": ("plugin: jexida.cluster.jexida\ndeadline: 0\n", None, ["{config}", "'deadline'"]),
    "registry not a mapping": ("plugin: jexida.cluster.jexida\nnodes_file: nodes.yml\n", "- name: a\n",
                               ["{registry}", "mapping"]),
    # Registry strings reach ssh's command line and Ansible's templating: options and templates are refused.
    "host that is an ssh option": ("plugin: jexida.cluster.jexida\nnodes_file: nodes.yml\n",
                                   "nodes:\n  - {name: a, host: '-oProxyCommand=touch /tmp/x'}\n",
                                   ["{registry}", "node #1 ('a')", "'host' must be a host name"]),
    "templated host": ("plugin: jexida.cluster.jexida\nnodes:\n  - {name: a, host: \"{{ lookup('env', 'HOME') }}\"}\n",
                       None, ["{config}", "'host' must be a host name"]),
    "fallback host that is an option": ("plugin: jexida.cluster.jexida\nnodes:\n  - {name: a, fallback_hosts: [-oX]}\n",
                                        None, ["{config}", "'fallback_hosts'"]),
    "user with a space": ("plugin: jexida.cluster.jexida\nnodes:\n  - {name: a, user: '-l root'}\n", None,
                          ["{config}", "'user' must be a user name"]),
    "templated tag": ("plugin: jexida.cluster.jexida\nnodes:\n  - {name: a, tags: [\"{{ 7 * 7 }}\"]}\n", None,
                      ["{config}", "'tags' may not contain templates"]),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_configs_name_the_file_and_the_field(tmp_path: Path, case: str) -> None:
    config_text, registry_text, expected = BAD_CONFIGS[case]
    config = write_config(tmp_path, config_text)
    if registry_text is not None:
        (tmp_path / "nodes.yml").write_text(registry_text)
    with pytest.raises(AnsibleParserError) as err:
        parse(config)
    message = str(err.value)
    for part in expected:
        part = part.format(config=config, registry=tmp_path / "nodes.yml")
        assert part in message, f"{part!r} not in {message!r}"


# --- the real commands ------------------------------------------------------------------------


def test_ansible_inventory_graph_of_the_default_inventory(initialised: Path) -> None:
    graph = ansible_cli("ansible-inventory", "-i", str(initialised), "--graph")
    assert graph.returncode == 0, graph.stderr
    groups: dict[str, set[str]] = {}
    current = ""
    for line in graph.stdout.splitlines():
        name = line.strip(" |-")
        if name.startswith("@"):
            current = name[1:].rstrip(":")
            groups.setdefault(current, set())
        elif name:
            groups[current].add(name)
    assert "controller" in groups["tag_controller"]
    # Available unless this machine is overloaded right now (CI runs the lab beside us): never both.
    assert ("controller" in groups["available"]) != ("controller" in groups["load_overloaded"])


def test_ansible_inventory_json_has_the_facts(initialised: Path) -> None:
    listed = ansible_cli("ansible-inventory", "-i", str(initialised), "--host", "controller")
    assert listed.returncode == 0, listed.stderr
    data = json.loads(listed.stdout)
    assert data["ansible_connection"] == "local"
    facts = data["jexida_facts"]
    reachable = facts["reachable"]
    assert reachable is True, facts
