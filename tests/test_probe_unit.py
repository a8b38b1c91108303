"""The inventory plugin's probe: its output parsed, the controller probed for real, made-up
nodes probed through a stand-in ssh (fallbacks, deadline, cache), and its ssh command."""

from __future__ import annotations

import os
import subprocess
import textwrap
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from ansible.plugins.connection.ssh import Connection as SshConnection
from ansible.utils.path import unfrackpath
from ansible_collections.jexida.cluster.plugins.module_utils import node_spec
from inventory_helpers import host_vars, members, parse, write_config

import mcp_bridge  # noqa: F401  (the suite's ansible.cfg and Ansible's collection loader, before anything else)

# The plugin reads JEXIDA_INVENTORY_* and ANSIBLE_INVENTORY_CACHE: a developer's shell must not change the tests.
pytestmark = pytest.mark.usefixtures("no_stray_env")

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
    node = node_spec.normalize_node({
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
    node = node_spec.normalize_node({"name": "n1"}, "test")
    # ssh_command makes the ControlPath folder: a test's own, never the person's ~/.ansible/cp.
    target = jexida.target_for_node(node, {"private_key_file": "~/.ssh/fleet", "ssh_executable": "/usr/bin/ssh",
                                           "host_key_checking": False, "control_path_dir": str(tmp_path / "cp")})
    assert target.private_key_file == "~/.ssh/fleet" and target.ssh_executable == "/usr/bin/ssh"
    argv = jexida.ssh_command(target, "n1")
    assert "StrictHostKeyChecking=no" in argv
    assert f'IdentityFile="{os.path.expanduser("~/.ssh/fleet")}"' in argv
    local = jexida.target_for_node(node_spec.normalize_node({"name": "c", "vars": {"ansible_connection": "local"}},
                                                           "test"))
    assert local.local is True


