"""The jexida inventory plugin, the node registry and the node_registry module, without the lab.

The plugin runs on a real InventoryData and DataLoader (as in ansible-core's own
test_constructed.py); only the network part of the probe is replaced where a test needs
made-up load, and the controller node is probed for real on this machine.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from ansible.errors import AnsibleParserError
from ansible.inventory.data import InventoryData
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.connection.ssh import Connection as SshConnection
from ansible.plugins.loader import inventory_loader
from ansible.utils.path import unfrackpath
from ansible_collections.jexida.cluster.plugins.module_utils import registry
from ansible_collections.jexida.cluster.plugins.plugin_utils import facts as facts_module
from ansible_collections.jexida.cluster.plugins.plugin_utils import probe as probe_module
from conftest import REPO_ROOT

import mcp_bridge  # noqa: F401  (the suite's ansible.cfg and Ansible's collection loader, before anything else)

PLUGIN = "jexida.cluster.jexida"
ANSIBLE_ENV = {
    **os.environ,
    "PATH": str(REPO_ROOT / ".venv" / "bin") + os.pathsep + os.environ.get("PATH", ""),
    "ANSIBLE_NOCOLOR": "1",
}


# --- helpers ----------------------------------------------------------------------------------


def new_plugin() -> Any:
    plugin = inventory_loader.get(PLUGIN)
    assert plugin is not None, "jexida.cluster.jexida not found: is the collection linked into the venv (make setup)?"
    return plugin


class _PluginAndUtils:
    """The plugin's module with its shared code (plugin_utils facts and probe) in one namespace.

    Names are looked up in the plugin module first; patches go to the plugin module, where
    the plugin looks them up (it imports them by name). monkeypatch undoes a patch on an object
    without an instance __dict__ entry with delattr: that puts the original back."""

    def __init__(self, *modules: ModuleType) -> None:
        object.__setattr__(self, "_modules", modules)
        object.__setattr__(self, "_originals", {})

    def __getattr__(self, name: str) -> Any:
        for module in object.__getattribute__(self, "_modules"):
            if hasattr(module, name):
                return getattr(module, name)
        raise AttributeError(name)

    def __setattr__(self, name: str, value: Any) -> None:
        plugin_module = object.__getattribute__(self, "_modules")[0]
        object.__getattribute__(self, "_originals").setdefault(name, getattr(plugin_module, name))
        setattr(plugin_module, name, value)

    def __delattr__(self, name: str) -> None:
        setattr(object.__getattribute__(self, "_modules")[0], name,
                object.__getattribute__(self, "_originals").pop(name))


@pytest.fixture
def jexida() -> Any:
    """The plugin's module (as the plugin loader loaded it) and the plugin_utils it uses."""
    return _PluginAndUtils(sys.modules[type(new_plugin()).__module__], facts_module, probe_module)


def write_config(tmp_path: Path, text: str, name: str = "test.jexida.yml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def parse(path: Path, cache: bool = True) -> tuple[Any, InventoryData]:
    """What InventoryManager does for one source: parse, then save the cache if it changed."""
    plugin = new_plugin()
    inventory = InventoryData()
    plugin.parse(inventory, DataLoader(), str(path), cache=cache)
    if plugin.get_option("cache"):
        plugin.update_cache_if_changed()
    return plugin, inventory


def members(inventory: InventoryData, group: str) -> set[str]:
    return {host.name for host in inventory.groups[group].get_hosts()} if group in inventory.groups else set()


def host_vars(inventory: InventoryData, host: str) -> dict[str, Any]:
    return inventory.get_host(host).get_vars()


def made_up_facts(**values: Any) -> dict[str, Any]:
    facts = {
        "reachable": True, "address": None, "probed_at": "2026-01-01T00:00:00Z", "probe_ms": 5, "error": None,
        "os": "linux", "arch": "x86_64", "distribution": "debian", "distribution_version": "12",
        "python_version": "3.11.2", "cpus": 4, "load_1": 0.4, "load_5": 0.4, "load_15": 0.4,
        "load_per_cpu": 0.1, "mem_total_mb": 8000, "mem_available_mb": 6000, "mem_used_pct": 25.0,
        "cpu_busy_pct": 10.0, "disk_free_mb": 10000, "running_jobs": 0, "capabilities": [],
    }
    facts.update(values)
    return facts


@pytest.fixture
def fake_probe(jexida: ModuleType, monkeypatch: pytest.MonkeyPatch) -> Callable[..., list[list[str]]]:
    """Replace the network probe with made-up facts per node; returns the list of probe calls."""

    def install(**facts_by_name: dict[str, Any]) -> list[list[str]]:
        calls: list[list[str]] = []

        def probe(targets: Any, settings: Any = None) -> dict[str, dict[str, Any]]:
            calls.append([t.name for t in targets])
            return {t.name: {**jexida.empty_facts(), **facts_by_name.get(t.name, made_up_facts()),
                             "address": t.addresses[0]} for t in targets}

        monkeypatch.setattr(jexida, "probe_nodes", probe)
        return calls

    return install


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


# --- probe output parsing ---------------------------------------------------------------------

LINUX_OUTPUT = """\
Welcome to a node with a chatty login banner
__JEXIDA_PROBE_BEGIN__ 1
os=Linux
arch=x86_64
loadavg=0.60 0.40 0.30 1/234 5678
cpus=4
mem_total_kb=8000000
mem_available_kb=2000000
cpu_stat_1=cpu  100 0 100 800 0 0 0 0 0 0
cpu_stat_2=cpu  130 0 120 850 0 0 0 0 0 0
distribution="ubuntu"
distribution_version="22.04"
disk_path=/opt/jexida-jobs
disk_free_kb=2048000
python=Python 3.10.12
running_jobs=3
gpu_count=2
docker=1
__JEXIDA_PROBE_END__
"""

MACOS_OUTPUT = """\
__JEXIDA_PROBE_BEGIN__ 1
os=Darwin
arch=arm64
loadavg={ 1.52 1.60 1.72 }
cpus=8
mem_total_bytes=17179869184
vm_stat=Mach Virtual Memory Statistics: (page size of 16384 bytes)
vm_stat=Pages free:                               12345.
vm_stat=Pages active:                            234567.
vm_stat=Pages inactive:                          200000.
vm_stat=Pages speculative:                         3000.
vm_stat=Pages wired down:                         99999.
distribution=macOS
distribution_version=14.5
disk_path=/Users/jexida
disk_free_kb=104857600
running_jobs=0
podman=1
__JEXIDA_PROBE_END__
"""


def test_parse_linux_probe_output(jexida: ModuleType) -> None:
    facts = jexida.parse_probe_output(LINUX_OUTPUT)
    assert facts == {
        "os": "linux", "arch": "x86_64", "distribution": "ubuntu", "distribution_version": "22.04",
        "python_version": "3.10.12", "cpus": 4, "load_1": 0.6, "load_5": 0.4, "load_15": 0.3,
        "load_per_cpu": 0.15, "mem_total_mb": 7812, "mem_available_mb": 1953, "mem_used_pct": 75.0,
        "cpu_busy_pct": 50.0, "disk_free_mb": 2000, "running_jobs": 3, "capabilities": ["gpu", "docker"],
    }


def test_parse_macos_probe_output(jexida: ModuleType) -> None:
    facts = jexida.parse_probe_output(MACOS_OUTPUT)
    assert facts["os"] == "darwin" and facts["arch"] == "arm64"
    assert (facts["load_1"], facts["load_5"], facts["load_15"], facts["cpus"]) == (1.52, 1.6, 1.72, 8)
    assert facts["mem_total_mb"] == 16384
    assert facts["mem_available_mb"] == (12345 + 200000 + 3000) * 16384 // 2**20
    assert facts["mem_used_pct"] == 79.5
    assert facts["cpu_busy_pct"] is None  # not measurable without a slow `top` run
    assert facts["python_version"] is None
    assert (facts["distribution"], facts["distribution_version"]) == ("macos", "14.5")
    assert facts["capabilities"] == ["podman"]
    assert facts["disk_free_mb"] == 102400


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello\nworld\n",
        "\x00\xff binary \x1b[0m",
        "__JEXIDA_PROBE_BEGIN__ 1\nos=Linux\nloadavg=0.1 0.1 0.1\ncpus=2\n",  # cut off: no end marker
        "__JEXIDA_PROBE_BEGIN__ 1\nos=Linux\ncpus=2\n__JEXIDA_PROBE_END__\n",  # no load
        "__JEXIDA_PROBE_BEGIN__ 1\nos=Linux\nloadavg=0.1 0.1 0.1\ncpus=zero\n__JEXIDA_PROBE_END__\n",
        "__JEXIDA_PROBE_BEGIN__ 1\nloadavg=0.1 0.1 0.1\ncpus=2\n__JEXIDA_PROBE_END__\n",  # no os
    ],
)
def test_garbage_probe_output_is_unparseable(jexida: ModuleType, text: str) -> None:
    with pytest.raises(ValueError, match="probe returned unparseable output"):
        jexida.parse_probe_output(text)


def test_probe_script_runs_under_posix_sh_here(jexida: ModuleType, tmp_path: Path) -> None:
    job_dir = tmp_path / "jobs dir"  # a space: the script must quote it
    for job, files in {"live": {"pid": str(os.getpid())}, "done": {"pid": str(os.getpid()), "rc": "0"},
                       "dead": {"pid": "999999999"}, "nopid": {}}.items():
        (job_dir / job).mkdir(parents=True)
        for name, text in files.items():
            (job_dir / job / name).write_text(text + "\n")
    out = subprocess.run(["/bin/sh", "-s"], input=jexida.probe_script(str(job_dir)), capture_output=True,
                         text=True, timeout=30, check=True).stdout
    facts = jexida.parse_probe_output(out)
    assert facts["os"] == "linux" and facts["cpus"] == os.cpu_count()
    assert facts["running_jobs"] == 1
    assert facts["cpu_busy_pct"] is not None and 0 <= facts["cpu_busy_pct"] <= 100
    assert facts["disk_free_mb"] > 0 and facts["mem_total_mb"] > 0


# --- probing: the controller for real, unreachable addresses, fallbacks, deadline ------------


def test_probe_false_lists_the_registry_without_probing(
    tmp_path: Path, jexida: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_probe(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("probe: false must not probe")

    monkeypatch.setattr(jexida, "probe_nodes", no_probe)
    (tmp_path / "nodes.yml").write_text("nodes:\n  - {name: a, host: 127.0.0.51, tags: [gpu]}\n"
                                        "  - {name: b, active: false}\n")
    path = write_config(tmp_path, "plugin: jexida.cluster.jexida\nnodes_file: nodes.yml\nprobe: false\n")
    _, inventory = parse(path)
    assert set(inventory.hosts) == {"a", "b"}
    assert members(inventory, "tag_gpu") == {"a"}
    assert members(inventory, "inactive") == {"b"}
    assert "available" not in inventory.groups and "unreachable" not in inventory.groups
    facts = host_vars(inventory, "a")["jexida_facts"]
    assert facts["reachable"] is None and set(facts) == set(jexida.FACT_KEYS)
    assert host_vars(inventory, "a")["ansible_host"] == "127.0.0.51"


def test_controller_node_is_probed_for_real(jexida: ModuleType, initialised: Path) -> None:
    _, inventory = parse(initialised, cache=False)
    facts = host_vars(inventory, "controller")["jexida_facts"]
    assert set(facts) == set(jexida.FACT_KEYS)
    assert facts["reachable"] is True, facts["error"]
    assert facts["error"] is None
    assert facts["cpus"] == os.cpu_count()
    assert facts["os"] == "linux" and facts["arch"] == os.uname().machine
    assert facts["address"] == "localhost"
    assert facts["load_group"] in ("idle", "normal", "busy", "overloaded")
    assert 0 < facts["mem_used_pct"] < 100
    assert "controller" in members(inventory, "tag_controller")
    assert "controller" in members(inventory, f"load_{facts['load_group']}")
    assert "controller" in members(inventory, "os_linux")
    if facts["load_group"] != "overloaded":
        assert "controller" in members(inventory, "available")


def test_unreachable_address_is_marked_and_never_raises(tmp_path: Path) -> None:
    path = write_config(tmp_path, """
        plugin: jexida.cluster.jexida
        connect_timeout: 1
        deadline: 5
        retries: 1
        nodes:
          - {name: far, host: 127.0.0.250, port: 1}
    """)
    started = time.monotonic()
    _, inventory = parse(path, cache=False)
    assert time.monotonic() - started < 5
    facts = host_vars(inventory, "far")["jexida_facts"]
    assert facts["reachable"] is False
    assert "127.0.0.250" in facts["error"] and ("refused" in facts["error"] or "timed out" in facts["error"])
    assert members(inventory, "unreachable") == {"far"}
    assert members(inventory, "available") == set()
    assert host_vars(inventory, "far")["ansible_host"] == "127.0.0.250"


FAKE_SSH = """\
#!/bin/sh
# Stands in for ssh: the address is the next-to-last argument.
for arg; do address=$last; last=$arg; done
echo "$address" >> {log}
case $address in
  answers*) exec /bin/sh -s ;;
  denies*) echo "jexida@$address: Permission denied (publickey)." >&2; exit 255 ;;
  babbles*) cat >/dev/null; echo 'hello from a broken shell'; exit 0 ;;
  hangs*) sleep 30 ;;
  *) echo "ssh: Could not resolve hostname $address: Name or service not known" >&2; exit 255 ;;
esac
"""


@pytest.fixture
def fake_ssh(tmp_path: Path) -> tuple[Path, Path]:
    """An ssh stand-in (node var ansible_ssh_executable), so fallbacks are tested with no network."""
    log = tmp_path / "ssh.log"
    log.touch()
    script = tmp_path / "fake-ssh"
    script.write_text(FAKE_SSH.replace("{log}", str(log)))
    script.chmod(0o755)
    return script, log


def fake_ssh_config(tmp_path: Path, ssh: Path, node: str, extra: str = "") -> Path:
    return write_config(tmp_path, f"""
        plugin: jexida.cluster.jexida
        retries: 2
        deadline: 5
        {extra}
        nodes:
          - {node}
            vars: {{ansible_ssh_executable: {ssh}, ansible_control_path_dir: {tmp_path}/cp}}
    """)


def test_fallback_hosts_are_tried_in_order_and_the_answer_becomes_ansible_host(
    tmp_path: Path, fake_ssh: tuple[Path, Path]
) -> None:
    ssh, log = fake_ssh
    path = fake_ssh_config(tmp_path, ssh, "name: lap1\n            host: lap1.local\n"
                                          "            fallback_hosts: [lap1.lan, answers-10.0.0.7, answers-late]")
    _, inventory = parse(path)
    # Each address that does not resolve is tried 1 + retries times; the first answer ends it.
    assert log.read_text().split() == ["lap1.local"] * 3 + ["lap1.lan"] * 3 + ["answers-10.0.0.7"]
    hv = host_vars(inventory, "lap1")
    assert hv["ansible_host"] == "answers-10.0.0.7"
    assert hv["jexida_facts"]["reachable"] is True and hv["jexida_facts"]["address"] == "answers-10.0.0.7"
    # The fake runs the real probe here, so the load group is this machine's.
    assert ("lap1" in members(inventory, "available")) == (hv["jexida_facts"]["load_group"] != "overloaded")


@pytest.mark.parametrize(
    ("host", "reason", "tries"),
    [
        ("denies-1", "Permission denied (publickey)", ["denies-1"]),  # it answered: no retry, no fallback
        ("babbles-1", "probe returned unparseable output", ["babbles-1"]),
        ("nowhere", "Could not resolve hostname nowhere", ["nowhere"] * 3 + ["denies-2"]),
    ],
)
def test_failures_are_reported_with_a_readable_reason(
    tmp_path: Path, fake_ssh: tuple[Path, Path], host: str, reason: str, tries: list[str]
) -> None:
    ssh, log = fake_ssh
    path = fake_ssh_config(tmp_path, ssh, f"name: n1\n            host: {host}\n"
                                          "            fallback_hosts: [denies-2, answers-3]")
    _, inventory = parse(path)
    facts = host_vars(inventory, "n1")["jexida_facts"]
    assert facts["reachable"] is False
    assert reason in facts["error"]
    assert log.read_text().split() == tries
    assert members(inventory, "unreachable") == {"n1"}
    assert host_vars(inventory, "n1")["ansible_host"] == host


def test_the_deadline_bounds_a_hanging_node(tmp_path: Path, fake_ssh: tuple[Path, Path]) -> None:
    ssh, _ = fake_ssh
    path = fake_ssh_config(tmp_path, ssh, "name: n1\n            host: hangs-1", extra="deadline: 1")
    started = time.monotonic()
    _, inventory = parse(path)
    assert time.monotonic() - started < 4
    facts = host_vars(inventory, "n1")["jexida_facts"]
    assert facts["reachable"] is False and "1s probe deadline" in facts["error"]


def test_cache_holds_the_facts_and_the_address_and_flush_probes_again(
    tmp_path: Path, jexida: ModuleType, fake_ssh: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    ssh, log = fake_ssh
    calls: list[list[str]] = []
    real_probe = jexida.probe_nodes

    def counting_probe(targets: Any, settings: Any = None) -> Any:
        calls.append([t.name for t in targets])
        return real_probe(targets, settings)

    monkeypatch.setattr(jexida, "probe_nodes", counting_probe)
    extra = f"cache: true\n        cache_plugin: ansible.builtin.jsonfile\n        cache_connection: {tmp_path}/cache"
    path = fake_ssh_config(tmp_path, ssh, "name: lap1\n            host: lap1.local\n"
                                          "            fallback_hosts: [answers-1]", extra=extra)

    _, first = parse(path, cache=True)  # empty cache: a miss probes and fills it
    assert calls == [["lap1"]]
    probed = host_vars(first, "lap1")["jexida_facts"]
    assert probed["reachable"] is True

    log.write_text("")
    _, second = parse(path, cache=True)  # a hit touches no node
    assert calls == [["lap1"]] and log.read_text() == ""
    assert host_vars(second, "lap1")["ansible_host"] == "answers-1"
    assert host_vars(second, "lap1")["jexida_facts"]["probed_at"] == probed["probed_at"]
    cached_group = host_vars(second, "lap1")["jexida_facts"]["load_group"]
    assert cached_group == host_vars(first, "lap1")["jexida_facts"]["load_group"]
    assert "lap1" in members(second, f"load_{cached_group}")

    _, third = parse(path, cache=False)  # --flush-cache / refresh_inventory
    assert calls == [["lap1"], ["lap1"]]
    assert log.read_text().split()[-1] == "answers-1"
    assert host_vars(third, "lap1")["ansible_host"] == "answers-1"


def test_templated_connection_vars_from_the_registry_are_rendered(
    tmp_path: Path, fake_ssh: tuple[Path, Path]
) -> None:
    ssh, log = fake_ssh
    # The registry is read like any inventory file (trusted), so its templates render for the probe.
    (tmp_path / "nodes.yml").write_text(textwrap.dedent(f"""\
        nodes:
          - name: n1
            host: answers-1
            vars:
              fleet_bin: {ssh.parent}
              ansible_ssh_executable: "{{{{ fleet_bin }}}}/{ssh.name}"
    """))
    path = write_config(tmp_path, "plugin: jexida.cluster.jexida\nnodes_file: nodes.yml\n")
    _, inventory = parse(path)
    assert host_vars(inventory, "n1")["jexida_facts"]["reachable"] is True
    assert log.read_text().split() == ["answers-1"]


def test_the_documented_example_is_a_working_config(
    tmp_path: Path, jexida: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    example = yaml.safe_load(jexida.EXAMPLES)
    example["cache_connection"] = str(tmp_path / "cache")
    (tmp_path / "nodes.yml").write_text("nodes:\n  - {name: builder1, host: 127.0.0.91, tags: [build]}\n")
    path = tmp_path / "cluster.jexida.yml"
    path.write_text(yaml.safe_dump(example))
    monkeypatch.setenv("JEXIDA_INVENTORY_PROBE", "false")  # the option's env var: no connection at all
    _, inventory = parse(path)
    assert set(inventory.hosts) == {"laptop1", "builder1"}
    assert members(inventory, "tag_build") == {"laptop1", "builder1"}
    assert members(inventory, "distro_unknown") == {"laptop1", "builder1"}
    assert host_vars(inventory, "laptop1")["jexida_free_slots"] == 0


# --- ssh command and control path -------------------------------------------------------------


def test_control_path_is_the_one_ansible_ssh_uses(jexida: ModuleType) -> None:
    ansible_own = SshConnection._create_control_path("127.0.0.11", 22, "jexida") % {
        "directory": unfrackpath("~/.ansible/cp")}
    assert jexida.control_path("127.0.0.11", 22, "jexida") == ansible_own
    assert jexida.control_path("h", 22, "u", template="%(directory)s/%%h") == unfrackpath("~/.ansible/cp") + "/%h"


def test_ssh_command_uses_the_hosts_connection_settings(jexida: ModuleType, tmp_path: Path) -> None:
    node = registry.normalize_node({
        "name": "n1", "host": "127.0.0.61", "port": 2201, "user": "root",
        "vars": {"ansible_ssh_private_key_file": "/keys/admin", "ansible_control_path_dir": str(tmp_path),
                 "ansible_ssh_common_args": "-o UserKnownHostsFile=/k/known -o StrictHostKeyChecking=yes"},
    }, "test")
    target = jexida.target_for_node(node, {"ssh_args": "-o ControlPersist=30s -o ServerAliveInterval=15"})
    argv = jexida.ssh_command(target, "127.0.0.61", connect_timeout=3)
    joined = " ".join(argv)
    assert argv[:5] == ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=3"]
    assert argv[-2:] == ["127.0.0.61", "/bin/sh -s"]
    for part in ("Port=2201", 'User="root"', 'IdentityFile="/keys/admin"', "UserKnownHostsFile=/k/known",
                 "ControlPersist=30s", "ControlMaster=auto",
                 f'ControlPath="{jexida.control_path("127.0.0.61", 2201, "root", str(tmp_path))}"'):
        assert part in joined, part
    assert "ControlPersist=60s" not in joined  # the configured value stays the only one
    assert joined.index("ServerAliveInterval") < joined.index("UserKnownHostsFile")  # Ansible's order


def test_target_falls_back_to_ansible_config(jexida: ModuleType, tmp_path: Path) -> None:
    node = registry.normalize_node({"name": "n1"}, "test")
    # ssh_command makes the ControlPath folder: a test's own, never the person's ~/.ansible/cp.
    target = jexida.target_for_node(node, {"private_key_file": "~/.ssh/fleet", "ssh_executable": "/usr/bin/ssh",
                                           "host_key_checking": False, "control_path_dir": str(tmp_path / "cp")})
    assert target.private_key_file == "~/.ssh/fleet" and target.ssh_executable == "/usr/bin/ssh"
    argv = jexida.ssh_command(target, "n1")
    assert "StrictHostKeyChecking=no" in argv
    assert f'IdentityFile="{os.path.expanduser("~/.ssh/fleet")}"' in argv
    local = jexida.target_for_node(registry.normalize_node({"name": "c", "vars": {"ansible_connection": "local"}},
                                                           "test"))
    assert local.local is True


# --- the registry -----------------------------------------------------------------------------


def test_registry_upsert_adds_then_updates_and_never_duplicates(tmp_path: Path) -> None:
    path = str(tmp_path / "deep" / "dir" / "nodes.yml")
    assert registry.load_registry(path) == []
    changed, node = registry.upsert_node(path, {"name": "gpu1", "host": "127.0.0.71", "tags": ["gpu"]})
    assert changed and node == {"name": "gpu1", "host": "127.0.0.71", "port": 22, "user": "jexida",
                                "tags": ["gpu"], "active": True, "vars": {}, "fallback_hosts": []}
    assert registry.upsert_node(path, {"name": "gpu1", "host": "127.0.0.71"}) == (False, node)
    changed, node = registry.upsert_node(path, {"name": "gpu1", "port": 2222})
    assert changed and node["port"] == 2222 and node["tags"] == ["gpu"]  # fields not given are kept
    registry.upsert_node(path, {"name": "cpu1"})
    nodes = registry.load_registry(path)
    assert [n["name"] for n in nodes] == ["gpu1", "cpu1"]
    text = Path(path).read_text()
    assert text.startswith(registry.HEADER) and text.count("name: gpu1") == 1
    assert registry.remove_node(path, "gpu1") is True
    assert registry.remove_node(path, "gpu1") is False
    assert [n["name"] for n in registry.load_registry(path)] == ["cpu1"]
    assert registry.remove_node(str(tmp_path / "nope" / "nodes.yml"), "x") is False
    assert not (tmp_path / "nope").exists()


def test_registry_dry_run_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "nodes.yml"
    assert registry.upsert_node(str(path), {"name": "a"}, dry_run=True)[0] is True
    assert not path.parent.exists()


def test_registry_output_passes_yamllint(tmp_path: Path) -> None:
    path = tmp_path / "nodes.yml"
    registry.upsert_node(str(path), {"name": "a", "tags": ["x", "yes"], "vars": {"k": "on"},
                                     "fallback_hosts": ["127.0.0.9"]})
    lint = subprocess.run([str(REPO_ROOT / ".venv" / "bin" / "yamllint"), "-s", "-c", str(REPO_ROOT / ".yamllint"),
                           str(path)], capture_output=True, text=True, check=False)
    assert lint.returncode == 0, lint.stdout
    assert registry.load_registry(str(path))[0]["tags"] == ["x", "yes"]


def _upsert_many(path: str, worker: int, count: int) -> None:
    for i in range(count):
        registry.upsert_node(path, {"name": f"w{worker}-n{i}", "tags": [f"w{worker}"]})


def test_concurrent_upserts_from_processes_and_threads_lose_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "nodes.yml")
    stop = threading.Event()
    read_errors: list[Exception] = []

    def reader() -> None:  # a reader never sees a half-written file
        while not stop.is_set():
            try:
                registry.load_registry(path)
            except Exception as exc:
                read_errors.append(exc)
            time.sleep(0.005)

    watcher = threading.Thread(target=reader)
    watcher.start()
    try:
        ctx = multiprocessing.get_context("fork")
        procs = [ctx.Process(target=_upsert_many, args=(path, w, 12)) for w in range(5)]
        threads = [threading.Thread(target=_upsert_many, args=(path, 100 + w, 12)) for w in range(3)]
        for worker in [*procs, *threads]:
            worker.start()
        for proc in procs:
            proc.join(60)
            assert proc.exitcode == 0
        for thread in threads:
            thread.join(60)
    finally:
        stop.set()
        watcher.join()
    names = [n["name"] for n in registry.load_registry(path)]
    assert len(names) == len(set(names)) == 8 * 12
    assert read_errors == []
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_failed_write_leaves_the_old_file_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "nodes.yml"
    registry.upsert_node(str(path), {"name": "a"})
    before = path.read_text()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(registry.os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space left"):
        registry.upsert_node(str(path), {"name": "b"})
    assert path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nodes.yml", "nodes.yml.lock"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", None),
        ("# only a comment\n", None),
        ("nodes: [\n", ["malformed YAML"]),
        ("- name: a\n", ["must be a mapping"]),
        ("nodes: {name: a}\n", ["'nodes' must be a list"]),
        ("nodes:\n  - name: a\n  - name: gpu1\n    tags: 3\n", ["node #2 ('gpu1')", "'tags' must be a list of strings",
                                                               "got int"]),
        ("nodes:\n  - name: a\n    active: maybe\n", ["node #1 ('a')", "'active'"]),
        ("nodes:\n  - {name: a, fallback_hosts: a.lan}\n", ["'fallback_hosts'"]),
        ("nodes: []\nextra: 1\n", ["'extra'"]),
    ],
)
def test_registry_loading(tmp_path: Path, text: str, expected: list[str] | None) -> None:
    path = tmp_path / "nodes.yml"
    path.write_text(text)
    if expected is None:
        assert registry.load_registry(str(path)) == []
        return
    with pytest.raises(registry.RegistryError) as err:
        registry.load_registry(str(path))
    assert str(err.value).startswith(f"{path}: ")
    for part in expected:
        assert part in str(err.value)


def test_upsert_errors_name_the_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "nodes.yml"
    with pytest.raises(registry.RegistryError, match=r"nodes\.yml: node 'a': 'port' must be an integer"):
        registry.upsert_node(str(path), {"name": "a", "port": "22x"})
    assert not path.exists()


# --- the real commands ------------------------------------------------------------------------


def run_ansible(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=REPO_ROOT, env=ANSIBLE_ENV, capture_output=True, text=True,
                          timeout=180, check=False)


def test_node_registry_module_through_ansible(tmp_path: Path) -> None:
    path = tmp_path / "reg" / "nodes.yml"
    module_args = f"path={path} name=gpu1 host=127.0.0.81 port=2222 tags=gpu,fast fallback_hosts=127.0.0.82"
    runs = [run_ansible("ansible", "localhost", "-o", "-m", "jexida.cluster.node_registry", "-a", module_args)
            for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stdout + run.stderr
    assert "CHANGED" in runs[0].stdout and '"changed": true' in runs[0].stdout
    assert "SUCCESS" in runs[1].stdout and '"changed": false' in runs[1].stdout
    assert registry.load_registry(str(path)) == [{
        "name": "gpu1", "host": "127.0.0.81", "port": 2222, "user": "jexida", "tags": ["gpu", "fast"],
        "active": True, "vars": {}, "fallback_hosts": ["127.0.0.82"]}]

    check = run_ansible("ansible", "localhost", "-o", "--check", "-m", "jexida.cluster.node_registry",
                        "-a", f"path={path} name=gpu1 state=absent")
    assert check.returncode == 0 and "CHANGED" in check.stdout
    assert len(registry.load_registry(str(path))) == 1  # check mode wrote nothing

    bad = run_ansible("ansible", "localhost", "-o", "-m", "jexida.cluster.node_registry",
                      "-a", f"path={path} name=gpu1 port=70000")
    assert bad.returncode != 0 and f"{path}: node 'gpu1': 'port'" in bad.stdout


def test_ansible_inventory_graph_of_the_default_inventory(initialised: Path) -> None:
    graph = run_ansible("ansible-inventory", "-i", str(initialised), "--graph")
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
    listed = run_ansible("ansible-inventory", "-i", str(initialised), "--host", "controller")
    assert listed.returncode == 0, listed.stderr
    data = json.loads(listed.stdout)
    assert data["ansible_connection"] == "local"
    facts = data["jexida_facts"]
    reachable = facts["reachable"]
    assert reachable is True, facts


@pytest.fixture(autouse=True)
def _no_stray_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The plugin reads these; a developer's shell must not change what the tests see.
    for name in ("JEXIDA_INVENTORY_PROBE", "JEXIDA_INVENTORY_DEADLINE", "ANSIBLE_INVENTORY_CACHE"):
        monkeypatch.delenv(name, raising=False)
    yield
