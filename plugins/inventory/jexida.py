# Copyright (c) jexida-cluster team
# Apache License 2.0 (see the collection's galaxy.yml)
"""The jexida inventory: worker nodes from the node registry, grouped by tags and live load."""

# Ansible's layout puts DOCUMENTATION/EXAMPLES/RETURN before the imports.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
name: jexida
version_added: "0.1.0"
short_description: Worker nodes from the jexida node registry, grouped by tags and live load
description:
  - Lists the nodes of the jexida node registry (O(nodes) and/or O(nodes_file)) with the
    host variables C(ansible_host), C(ansible_port), C(ansible_user), the node's C(vars),
    C(jexida_tags), C(jexida_active) and C(jexida_facts).
  - With O(probe) on, every active node is probed with ONE SSH round trip (a POSIX C(sh)
    script reading C(/proc) on Linux and C(sysctl)/C(vm_stat) on macOS), all nodes in
    parallel, bounded by O(connect_timeout), O(retries) and the total O(deadline). The
    probe uses the connection settings Ansible would use for the host (user, port, private
    key, C(ansible_ssh_common_args)/C(ansible_ssh_extra_args), C([ssh_connection] ssh_args))
    and the same ControlPath as the C(ansible.builtin.ssh) connection plugin, so it leaves a
    warm ControlPersist master for the next Ansible run. Nodes with
    C(ansible_connection=local) run the script locally. No Ansible fact gathering happens.
  - A node whose C(host) does not resolve or answer is tried at each of its
    C(fallback_hosts) in order; the address that answered becomes C(ansible_host).
  - A node that cannot be probed (timeout, refused, authentication failure, garbage output)
    is listed with C(jexida_facts.reachable=false) and C(jexida_facts.error); the inventory
    never fails because of a node.
  - "Groups: C(tag_<tag>) for every tag; for probed nodes C(os_<os>), C(arch_<arch>),
    C(cap_<capability>) (gpu, docker, podman), exactly one of C(load_idle), C(load_normal),
    C(load_busy), C(load_overloaded), and C(available) (active, reachable, not overloaded);
    C(unreachable) for active nodes that did not answer; C(inactive) for nodes with
    C(active=false), which are never probed. Names pass through the group name sanitizer; tags
    that change when sanitized (C(gpu-large) becomes group C(tag_gpu_large)) get one warning."
  - "Load groups use the 1-minute load average per CPU (C(load_per_cpu)):
    C(load_idle) below O(thresholds.idle_load_per_cpu);
    C(load_normal) from there up to below O(thresholds.busy_load_per_cpu);
    C(load_busy) from there up;
    C(load_overloaded) when memory use is at or above O(thresholds.overloaded_mem_pct), or the load
    per CPU is at or above O(thresholds.overloaded_load_per_cpu) while the CPU is at least
    O(thresholds.overloaded_cpu_busy_pct) busy in the probe's own sample (load averages lag by a
    minute; a node that has just finished its work is busy, not overloaded). Where the CPU
    sample is not available (macOS), the load alone decides."
  - "With caching on (O(cache)), the probed facts (including the address that answered) are
    cached, so a cached listing touches no node; C(ansible-inventory --flush-cache) or
    C(meta: refresh_inventory) probe again. Nodes added since the cache was written, or whose
    host, port, user, fallback hosts or connection changed, are probed and the cache updated."
  - The plugin never writes the registry; use M(jexida.cluster.node_registry) for that.
  - Only files named C(*.jexida.yml) or C(*.jexida.yaml) are read by this plugin.
author:
  - jexida-cluster team
extends_documentation_fragment:
  - constructed
  - inventory_cache
options:
  plugin:
    description: Marks the file as a source for this plugin.
    required: true
    type: str
    choices: [jexida.cluster.jexida]
  nodes:
    description:
      - Nodes written inline, in the node registry's format (C(name) required; C(host), C(port),
        C(user), C(tags), C(active), C(vars), C(fallback_hosts)).
      - Merged with the nodes of O(nodes_file). A name present in both is an error, so each
        node is described in exactly one place.
    type: list
    elements: dict
    default: []
  nodes_file:
    description:
      - The node registry file (top-level C(nodes:) list), as written by M(jexida.cluster.node_registry).
      - A relative path is taken from the folder of this inventory file.
      - A missing file counts as an empty registry (with a warning).
    type: str
  probe:
    description:
      - Probe active nodes for live facts. V(false) lists the registry only and opens no connection;
        C(jexida_facts) then holds V(null) values and no load, C(available) or C(unreachable) membership.
    type: bool
    default: true
    env:
      - name: JEXIDA_INVENTORY_PROBE
  connect_timeout:
    description: Seconds SSH waits for each connection (SSH's C(ConnectTimeout)).
    type: int
    default: 2
  deadline:
    description:
      - Seconds the whole probe may take, all nodes together. Nodes still unanswered then are unreachable.
    type: float
    default: 10
    env:
      - name: JEXIDA_INVENTORY_DEADLINE
  retries:
    description: How many more times a connection that got no answer is tried, per address, within O(deadline).
    type: int
    default: 1
  forks:
    description: How many nodes are probed at the same time.
    type: int
    default: 64
  thresholds:
    description:
      - Edges of the load groups (see the description). Keys left out keep their default.
      - C(idle_load_per_cpu) <= C(busy_load_per_cpu) <= C(overloaded_load_per_cpu) is required.
    type: dict
    default:
      overloaded_mem_pct: 80
      overloaded_load_per_cpu: 1.0
      overloaded_cpu_busy_pct: 40
      busy_load_per_cpu: 0.7
      idle_load_per_cpu: 0.2
  job_dir:
    description:
      - The folder of jexida jobs on the nodes (one C(<id>/) folder per job), where C(running_jobs)
        are counted and C(disk_free_mb) is measured (C($HOME) when it does not exist).
    type: str
    default: /opt/jexida-jobs
notes:
  - "C(jexida_facts) keys: C(reachable), C(address), C(probed_at) (ISO 8601 UTC), C(probe_ms), C(error),
    C(os) (V(linux), V(darwin)), C(arch), C(distribution), C(distribution_version), C(python_version),
    C(cpus), C(load_1), C(load_5), C(load_15), C(load_per_cpu), C(mem_total_mb), C(mem_available_mb),
    C(mem_used_pct), C(cpu_busy_pct), C(disk_free_mb), C(running_jobs), C(capabilities), C(load_group).
    Values that could not be measured are V(null)."
  - C(reachable) is V(null) for nodes that were not probed (inactive nodes, O(probe=false)).
  - The probe speaks SSH (C(ansible_connection) V(ssh), V(smart), V(paramiko)) or runs locally
    (V(local)). A node with any other connection plugin is listed as unreachable, with an C(error) saying so.
  - A node's C(vars) may not set C(ansible_host), C(ansible_port) or C(ansible_user); use its
    C(host), C(port) and C(user) fields.
"""

EXAMPLES = r"""
# inventory/cluster.jexida.yml
plugin: jexida.cluster.jexida
nodes_file: nodes.yml          # the registry, next to this file
nodes:                         # more nodes, written here
  - name: laptop1
    host: laptop1.local
    fallback_hosts: [192.168.1.40]
    tags: [mac, build]
connect_timeout: 2
deadline: 10
retries: 1
thresholds:
  overloaded_mem_pct: 90
job_dir: /opt/jexida-jobs
# keep the probed facts for 5 minutes; `ansible-inventory --flush-cache` probes again
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: ~/.cache/jexida-inventory
cache_timeout: 300
compose:
  jexida_free_slots: "(jexida_facts.cpus | default(0, true)) - (jexida_facts.running_jobs | default(0, true))"
groups:
  big_memory: "(jexida_facts.mem_total_mb | default(0, true)) >= 65536"
keyed_groups:
  - key: jexida_facts.distribution
    prefix: distro
    default_value: unknown
"""

import json
import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from hashlib import sha1
from typing import Any

from ansible import constants as C
from ansible.errors import AnsibleError, AnsibleParserError
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable
from ansible.plugins.loader import connection_loader
from ansible.utils.path import unfrackpath
from ansible_collections.jexida.cluster.plugins.module_utils.registry import (
    RegistryError,
    validate_document,
    validate_nodes,
)

DEFAULT_JOB_DIR = "/opt/jexida-jobs"
DEFAULT_CONTROL_PATH_DIR = "~/.ansible/cp"
DEFAULT_THRESHOLDS: dict[str, float] = {
    "overloaded_mem_pct": 80.0,
    "overloaded_load_per_cpu": 1.0,
    "overloaded_cpu_busy_pct": 40.0,
    "busy_load_per_cpu": 0.7,
    "idle_load_per_cpu": 0.2,
}
LOAD_GROUPS: tuple[str, ...] = ("idle", "normal", "busy", "overloaded")
FACT_KEYS: tuple[str, ...] = (
    "reachable", "address", "probed_at", "probe_ms", "error",
    "os", "arch", "distribution", "distribution_version", "python_version",
    "cpus", "load_1", "load_5", "load_15", "load_per_cpu",
    "mem_total_mb", "mem_available_mb", "mem_used_pct", "cpu_busy_pct",
    "disk_free_mb", "running_jobs", "capabilities", "load_group",
)
UNPARSEABLE = "probe returned unparseable output"
CACHE_VERSION = 1
_BEGIN = "__JEXIDA_PROBE_BEGIN__ 1"
_END = "__JEXIDA_PROBE_END__"

# The node-side probe. Everything runs inside a function that sh reads whole before
# running it, with stdin from /dev/null: nothing in it can eat the rest of the script,
# which arrives on stdin. It prints raw numbers; all arithmetic is done by the parser.
_PROBE_SCRIPT = r"""
jexida_probe() {
  LC_ALL=C; export LC_ALL
  job_dir=@JOB_DIR@
  echo '@BEGIN@'
  set -- $(uname -sm 2>/dev/null)
  os=$1
  echo "os=$os"
  echo "arch=$2"
  case $os in
    Linux)
      read -r loadavg < /proc/loadavg
      echo "loadavg=$loadavg"
      echo "cpus=$(getconf _NPROCESSORS_ONLN 2>/dev/null || nproc --all 2>/dev/null || nproc)"
      mt='' ma='' mf=0 mb=0 mc=0
      while read -r key value _; do
        case $key in
          MemTotal:) mt=$value ;;
          MemAvailable:) ma=$value ;;
          MemFree:) mf=$value ;;
          Buffers:) mb=$value ;;
          Cached:) mc=$value ;;
        esac
      done < /proc/meminfo
      # Kernels before 3.14 have no MemAvailable.
      [ -n "$ma" ] || ma=$((mf + mb + mc))
      echo "mem_total_kb=$mt"
      echo "mem_available_kb=$ma"
      read -r s1 < /proc/stat
      sleep 0.1 2>/dev/null || sleep 1
      read -r s2 < /proc/stat
      echo "cpu_stat_1=$s1"
      echo "cpu_stat_2=$s2"
      if [ -r /etc/os-release ]; then
        while IFS='=' read -r key value; do
          case $key in
            ID) echo "distribution=$value" ;;
            VERSION_ID) echo "distribution_version=$value" ;;
          esac
        done < /etc/os-release
      fi
      ;;
    Darwin)
      echo "loadavg=$(sysctl -n vm.loadavg)"
      echo "cpus=$(sysctl -n hw.logicalcpu 2>/dev/null || sysctl -n hw.ncpu)"
      echo "mem_total_bytes=$(sysctl -n hw.memsize)"
      vm_stat | sed 's/^/vm_stat=/'
      echo "distribution=$(sw_vers -productName)"
      echo "distribution_version=$(sw_vers -productVersion)"
      ;;
    *)
      echo "loadavg=$(sysctl -n vm.loadavg)"
      echo "cpus=$(sysctl -n hw.ncpu)"
      echo "mem_total_bytes=$(sysctl -n hw.physmem)"
      ;;
  esac
  disk_path=$job_dir
  [ -d "$disk_path" ] || disk_path=$HOME
  echo "disk_path=$disk_path"
  set -f
  set -- $(df -Pk "$disk_path" | tail -n 1)
  set +f
  echo "disk_free_kb=$4"
  if command -v python3 >/dev/null 2>&1; then echo "python=$(python3 --version 2>&1)"; fi
  jobs=0
  for d in "$job_dir"/*/; do
    [ -f "${d}pid" ] || continue
    [ -e "${d}rc" ] && continue
    pid=''
    read -r pid < "${d}pid"
    case $pid in ''|*[!0-9]*) continue ;; esac
    # kill -0 fails with EPERM on another user's live process; /proc still shows it.
    if kill -0 "$pid" 2>/dev/null || [ -d "/proc/$pid" ]; then jobs=$((jobs + 1)); fi
  done
  echo "running_jobs=$jobs"
  if command -v nvidia-smi >/dev/null 2>&1; then
    # A wedged driver can hang nvidia-smi: bound it where timeout(1) exists.
    if command -v timeout >/dev/null 2>&1; then
      echo "gpu_count=$(timeout 5 nvidia-smi -L | grep -c '^GPU ')"
    else
      echo "gpu_count=$(nvidia-smi -L | grep -c '^GPU ')"
    fi
  fi
  command -v docker >/dev/null 2>&1 && echo "docker=1"
  command -v podman >/dev/null 2>&1 && echo "podman=1"
  echo '@END@'
}
jexida_probe </dev/null 2>/dev/null
exit 0
"""

# ssh errors that mean "nobody answered at this address": retried, then the next address.
_NO_ANSWER = re.compile(
    r"could not resolve|name or service not known|nodename nor servname|temporary failure in name resolution"
    r"|no address associated|timed out|connection refused|no route to host|network is unreachable"
    r"|host is down|connection reset|connection closed by|kex_exchange_identification|banner exchange",
    re.IGNORECASE,
)


# --- pure functions: script, parsing, classification, groups --------------------------------


def probe_script(job_dir: str = DEFAULT_JOB_DIR) -> str:
    """The POSIX sh script one probe runs on a node (read from stdin by ``/bin/sh -s``)."""
    return (
        _PROBE_SCRIPT.replace("@JOB_DIR@", shlex.quote(job_dir))
        .replace("@BEGIN@", _BEGIN)
        .replace("@END@", _END)
    )


def empty_facts() -> dict[str, Any]:
    """A ``jexida_facts`` value with every key and nothing measured."""
    facts: dict[str, Any] = dict.fromkeys(FACT_KEYS)
    facts["capabilities"] = []
    return facts


def _int(value: str | None) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _unquote(value: str | None) -> str | None:
    value = (value or "").strip().strip("\"'").strip()
    return value or None


def _cpu_busy_pct(first: str | None, second: str | None) -> float | None:
    """CPU busy share between two ``cpu`` lines of /proc/stat (guest time is inside user time)."""
    try:
        a = [int(x) for x in (first or "").split()[1:9]]
        b = [int(x) for x in (second or "").split()[1:9]]
    except ValueError:
        return None
    if len(a) < 4 or len(a) != len(b):
        return None
    total = sum(b) - sum(a)
    idle = (b[3] - a[3]) + ((b[4] - a[4]) if len(a) > 4 else 0)  # idle + iowait
    if total <= 0:
        return None
    return round(max(0.0, min(100.0, 100.0 * (total - idle) / total)), 1)


def _darwin_available_mb(vm_stat: list[str]) -> int | None:
    page = None
    pages: dict[str, int] = {}
    for line in vm_stat:
        match = re.search(r"page size of (\d+) bytes", line)
        if match:
            page = int(match.group(1))
            continue
        key, _, value = line.partition(":")
        number = _int(value.strip().rstrip("."))
        if number is not None:
            pages[key.strip().lower()] = number
    if page is None or "pages free" not in pages:
        return None
    free = sum(pages.get(k, 0) for k in ("pages free", "pages inactive", "pages speculative"))
    return free * page // (1024 * 1024)


def parse_probe_output(text: str) -> dict[str, Any]:
    """Facts from the probe script's output; raises ValueError(UNPARSEABLE) for anything else.

    Returns the measured keys of ``jexida_facts`` (os ... capabilities, load_per_cpu);
    the probe bookkeeping keys (reachable, address, ...) are added by the caller.
    """
    lines = (text or "").splitlines()
    try:
        begin = lines.index(_BEGIN)
        end = lines.index(_END, begin + 1)
    except ValueError:
        raise ValueError(UNPARSEABLE) from None
    raw: dict[str, list[str]] = {}
    for line in lines[begin + 1:end]:
        key, sep, value = line.partition("=")
        if sep and re.fullmatch(r"[a-z_0-9]+", key):
            raw.setdefault(key, []).append(value)

    def one(key: str) -> str | None:
        values = raw.get(key)
        return values[-1].strip() if values else None

    os_name = (one("os") or "").lower()
    loads = re.findall(r"\d+(?:\.\d+)?", one("loadavg") or "")
    cpus = _int(one("cpus"))
    if not os_name or len(loads) < 3 or not cpus or cpus < 1:
        raise ValueError(UNPARSEABLE)
    load_1, load_5, load_15 = (float(x) for x in loads[:3])

    if one("mem_total_kb") is not None:
        total_kb, avail_kb = _int(one("mem_total_kb")), _int(one("mem_available_kb"))
        mem_total = total_kb // 1024 if total_kb is not None else None
        mem_available = avail_kb // 1024 if avail_kb is not None else None
    else:
        total_bytes = _int(one("mem_total_bytes"))
        mem_total = total_bytes // (1024 * 1024) if total_bytes is not None else None
        mem_available = _darwin_available_mb(raw.get("vm_stat", []))
    mem_used_pct = None
    if mem_total and mem_available is not None:
        mem_available = min(mem_available, mem_total)
        mem_used_pct = round(100.0 * (mem_total - mem_available) / mem_total, 1)

    free_kb = _int(one("disk_free_kb"))
    python = re.search(r"Python\s+(\d+\.\d+(?:\.\d+)?\S*)", one("python") or "")
    distribution = _unquote(one("distribution"))
    gpus = _int(one("gpu_count")) or 0
    capabilities = [cap for cap, present in (("gpu", gpus > 0), ("docker", one("docker") == "1"),
                                             ("podman", one("podman") == "1")) if present]
    return {
        "os": os_name,
        "arch": one("arch") or None,
        "distribution": distribution.lower() if distribution else None,
        "distribution_version": _unquote(one("distribution_version")),
        "python_version": python.group(1) if python else None,
        "cpus": cpus,
        "load_1": load_1,
        "load_5": load_5,
        "load_15": load_15,
        "load_per_cpu": round(load_1 / cpus, 2),
        "mem_total_mb": mem_total,
        "mem_available_mb": mem_available,
        "mem_used_pct": mem_used_pct,
        "cpu_busy_pct": _cpu_busy_pct(one("cpu_stat_1"), one("cpu_stat_2")),
        "disk_free_mb": free_kb // 1024 if free_kb is not None else None,
        "running_jobs": _int(one("running_jobs")),
        "capabilities": capabilities,
    }


def merge_thresholds(raw: Mapping[str, Any] | None) -> dict[str, float]:
    """The defaults overridden by ``raw``; raises ValueError naming ``thresholds.<key>``."""
    merged = dict(DEFAULT_THRESHOLDS)
    for key, value in (raw or {}).items():
        if key not in DEFAULT_THRESHOLDS:
            raise ValueError(f"unknown key 'thresholds.{key}'; known keys: {', '.join(DEFAULT_THRESHOLDS)}")
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(f"'thresholds.{key}' must be a number >= 0, got {value!r}")
        merged[key] = float(value)
    if not merged["idle_load_per_cpu"] <= merged["busy_load_per_cpu"] <= merged["overloaded_load_per_cpu"]:
        raise ValueError(
            "'thresholds' must keep idle_load_per_cpu <= busy_load_per_cpu <= overloaded_load_per_cpu, got "
            f"{merged['idle_load_per_cpu']} / {merged['busy_load_per_cpu']} / {merged['overloaded_load_per_cpu']}"
        )
    return merged


def classify_load(facts: Mapping[str, Any], thresholds: Mapping[str, Any] | None = None) -> str:
    """One of idle, normal, busy, overloaded for a probed node (edges: see the plugin's description)."""
    edges = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    per_cpu = facts.get("load_per_cpu")
    if per_cpu is None and facts.get("load_1") is not None and facts.get("cpus"):
        per_cpu = facts["load_1"] / facts["cpus"]
    mem = facts.get("mem_used_pct")
    busy_cpu = facts.get("cpu_busy_pct")
    if mem is not None and mem >= edges["overloaded_mem_pct"]:
        return "overloaded"
    if per_cpu is None:
        return "normal"  # nothing to judge by but memory, which is fine
    cpu_confirms = busy_cpu is None or busy_cpu >= edges["overloaded_cpu_busy_pct"]
    if per_cpu >= edges["overloaded_load_per_cpu"] and cpu_confirms:
        return "overloaded"
    if per_cpu >= edges["busy_load_per_cpu"]:
        return "busy"
    if per_cpu < edges["idle_load_per_cpu"]:
        return "idle"
    return "normal"


def node_groups(node: Mapping[str, Any], facts: Mapping[str, Any] | None, probed: bool = True) -> list[str]:
    """The raw (unsanitized) group names a node belongs to, given its facts."""
    groups = [f"tag_{tag}" for tag in node.get("tags", [])]
    if not node.get("active", True):
        return [*groups, "inactive"]
    if not probed:
        return groups
    facts = facts or {}
    if not facts.get("reachable"):
        return [*groups, "unreachable"]
    for prefix, key in (("os", "os"), ("arch", "arch")):
        if facts.get(key):
            groups.append(f"{prefix}_{facts[key]}")
    groups.extend(f"cap_{cap}" for cap in facts.get("capabilities") or [])
    load_group = facts.get("load_group") or "normal"
    groups.append(f"load_{load_group}")
    if load_group != "overloaded":
        groups.append("available")
    return groups


def control_path(host: str, port: int | None, user: str | None,
                 directory: str = DEFAULT_CONTROL_PATH_DIR, template: str | None = None) -> str:
    """The ControlPath Ansible's ssh connection plugin uses for host/port/user.

    Same recipe as ``Connection._create_control_path``: the first 10 hex digits of
    sha1("<host>-<port>-<user>") in the control_path_dir (default ~/.ansible/cp), or the
    configured control_path template with ``%(directory)s`` filled in.
    """
    cpdir = unfrackpath(directory)
    if template:
        return template % {"directory": cpdir}
    digest = sha1(f"{host}-{port}-{user}".encode(), usedforsecurity=False).hexdigest()
    return f"{cpdir}/{digest[:10]}"


# --- probing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeTarget:
    """How to reach one node: what Ansible's ssh connection would use for it."""

    name: str
    addresses: tuple[str, ...]  # host first, then fallback_hosts
    port: int = 22
    user: str | None = None
    local: bool = False
    unsupported: str | None = None  # a connection plugin the probe cannot speak
    ssh_executable: str = "ssh"
    ssh_args: tuple[str, ...] = ()
    common_args: tuple[str, ...] = ()
    extra_args: tuple[str, ...] = ()
    private_key_file: str | None = None
    host_key_checking: bool = True
    control_path_dir: str = DEFAULT_CONTROL_PATH_DIR
    control_path_template: str | None = None

    def signature(self) -> list[Any]:
        """What the cached facts depend on: a change means probe again."""
        return [list(self.addresses), self.port, self.user, self.local, self.unsupported]


@dataclass
class ProbeSettings:
    job_dir: str = DEFAULT_JOB_DIR
    connect_timeout: int = 2
    deadline: float = 10.0
    retries: int = 1
    forks: int = 64
    ssh_defaults: dict[str, Any] = field(default_factory=dict)


def ansible_ssh_defaults() -> dict[str, Any]:
    """The ssh connection plugin's settings from Ansible's config (ansible.cfg, env, defaults)."""
    # The plugin's options are known to the config manager only once the plugin is loaded.
    connection_loader.get("ssh", class_only=True)
    settings: dict[str, Any] = {}
    for option in ("ssh_executable", "ssh_args", "ssh_common_args", "ssh_extra_args", "private_key_file",
                   "host_key_checking", "control_path", "control_path_dir", "remote_user"):
        try:
            settings[option] = C.config.get_config_value(option, plugin_type="connection", plugin_name="ssh")
        except AnsibleError:
            settings[option] = None
    return settings


def _first_var(host_vars: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if host_vars.get(name) not in (None, ""):
            return host_vars[name]
    return None


def _split(args: Any) -> tuple[str, ...]:
    return tuple(shlex.split(str(args))) if args else ()


def target_for_node(node: Mapping[str, Any], ssh_defaults: Mapping[str, Any] | None = None) -> ProbeTarget:
    """The probe target for a registry node: its vars first, then Ansible's ssh settings."""
    defaults = ssh_defaults or {}
    host_vars = node.get("vars") or {}
    connection = str(_first_var(host_vars, "ansible_connection") or "ssh")
    local = connection in ("local", "ansible.builtin.local")
    unsupported = None
    if not local and connection not in ("ssh", "ansible.builtin.ssh", "smart", "paramiko", "paramiko_ssh",
                                        "ansible.builtin.paramiko_ssh"):
        unsupported = connection
    hkc = _first_var(host_vars, "ansible_ssh_host_key_checking", "ansible_host_key_checking")
    if hkc is None:
        hkc = defaults.get("host_key_checking", True)
    key = _first_var(host_vars, "ansible_ssh_private_key_file", "ansible_private_key_file")
    return ProbeTarget(
        name=str(node["name"]),
        addresses=tuple(str(a) for a in [node.get("host") or node["name"], *(node.get("fallback_hosts") or [])]),
        port=int(node.get("port") or 22),
        user=str(node.get("user") or defaults.get("remote_user") or "") or None,
        local=local,
        unsupported=unsupported,
        ssh_executable=str(_first_var(host_vars, "ansible_ssh_executable") or defaults.get("ssh_executable") or "ssh"),
        ssh_args=_split(_first_var(host_vars, "ansible_ssh_args") or defaults.get("ssh_args")),
        common_args=_split(_first_var(host_vars, "ansible_ssh_common_args") or defaults.get("ssh_common_args")),
        extra_args=_split(_first_var(host_vars, "ansible_ssh_extra_args") or defaults.get("ssh_extra_args")),
        private_key_file=str(key or defaults.get("private_key_file") or "") or None,
        host_key_checking=str(hkc).lower() not in ("false", "no", "0", "off"),
        control_path_dir=str(_first_var(host_vars, "ansible_control_path_dir")
                             or defaults.get("control_path_dir") or DEFAULT_CONTROL_PATH_DIR),
        control_path_template=str(_first_var(host_vars, "ansible_control_path")
                                  or defaults.get("control_path") or "") or None,
    )


def ssh_command(target: ProbeTarget, address: str, connect_timeout: int = 2) -> list[str]:
    """The ssh argv that runs ``/bin/sh -s`` on ``address``, in the order Ansible builds its own.

    BatchMode and ConnectTimeout come first so they win (ssh keeps the first value of an
    option); ControlMaster/ControlPersist come last, so configured ones win; the ControlPath
    is Ansible's, so the master this starts serves the next Ansible run to the host.
    """
    argv = [target.ssh_executable, "-o", "BatchMode=yes", "-o", f"ConnectTimeout={int(connect_timeout)}",
            *target.ssh_args]
    if not target.host_key_checking:
        argv += ["-o", "StrictHostKeyChecking=no"]
    argv += ["-o", f"Port={target.port}"]
    if target.private_key_file:
        argv += ["-o", f'IdentityFile="{os.path.expanduser(target.private_key_file)}"']
    argv += ["-o", "KbdInteractiveAuthentication=no",
             "-o", "PreferredAuthentications=gssapi-with-mic,gssapi-keyex,hostbased,publickey",
             "-o", "PasswordAuthentication=no"]
    if target.user:
        argv += ["-o", f'User="{target.user}"']
    argv += [*target.common_args, *target.extra_args]
    given = " ".join(argv).lower()
    if "controlpath" not in given:
        path = control_path(address, target.port, target.user, target.control_path_dir, target.control_path_template)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        argv += ["-o", f'ControlPath="{path}"']
    if "controlmaster" not in given:
        argv += ["-o", "ControlMaster=auto"]
    if "controlpersist" not in given:
        argv += ["-o", "ControlPersist=60s"]
    return [*argv, address, "/bin/sh -s"]


def ssh_error_reason(stderr: str, returncode: int | None) -> str:
    """The line of ssh's stderr that says what went wrong."""
    lines = [line.strip() for line in (stderr or "").splitlines()
             if line.strip() and not line.lstrip().startswith(("Warning:", "debug"))]
    if lines:
        return lines[-1][:300]
    return f"ssh exited with rc {returncode} and no message"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _run(argv: list[str], stdin: bytes, timeout: float) -> tuple[int, bytes, bytes]:
    """Run argv in its own process group; at the timeout the whole group is killed.

    Killing only ssh is not enough: a ProxyCommand (or anything else it started) would keep
    the pipes open and the read would wait for it. A ControlPersist master is not affected:
    it daemonizes into a session of its own.
    """
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return proc.returncode, stdout, stderr


def probe_node(target: ProbeTarget, settings: ProbeSettings, deadline_at: float | None = None) -> dict[str, Any]:
    """Probe one node (ssh, or locally for local connections); never raises.

    Returns a full ``jexida_facts`` dict without ``load_group``.
    """
    started = time.monotonic()
    deadline_at = deadline_at if deadline_at is not None else started + settings.deadline
    facts = empty_facts()
    facts.update(probed_at=_now(), reachable=False)
    script = probe_script(settings.job_dir).encode()
    failures: list[str] = []
    if target.unsupported:
        failures.append(f"cannot probe over connection {target.unsupported!r}")
    addresses = target.addresses[:1] if target.local else target.addresses
    for address in addresses if not target.unsupported else ():
        attempts = 1 if target.local else 1 + max(0, settings.retries)
        reason = ""
        for attempt in range(attempts):
            remaining = deadline_at - time.monotonic()
            if remaining <= 0:
                reason = f"no answer within the {settings.deadline:g}s probe deadline"
                break
            try:
                argv = ["/bin/sh", "-s"] if target.local else ssh_command(target, address, settings.connect_timeout)
                returncode, stdout, stderr = _run(argv, script, remaining)
            except subprocess.TimeoutExpired:
                reason = f"no answer within the {settings.deadline:g}s probe deadline"
                break
            except OSError as exc:  # no ssh binary, an unwritable control path folder, ...
                reason = f"cannot run the probe: {exc.strerror or exc} ({exc.filename or 'ssh'})"
                break
            try:
                parsed = parse_probe_output(stdout.decode("utf-8", "replace"))
            except ValueError:
                if target.local or returncode != 255:
                    reason = UNPARSEABLE
                    break
                reason = ssh_error_reason(stderr.decode("utf-8", "replace"), returncode)
                if _NO_ANSWER.search(reason) and attempt + 1 < attempts:
                    time.sleep(min(0.2, max(0.0, deadline_at - time.monotonic())))
                    continue
                break
            facts.update(parsed, reachable=True, address=address, error=None,
                         probe_ms=int((time.monotonic() - started) * 1000))
            return facts
        failures.append(reason if len(addresses) == 1 else f"{address}: {reason}")
        # Only "nobody answered" moves on to the next address: an auth failure or garbage
        # means this address is the node, and the next one would not be better.
        if not _NO_ANSWER.search(reason):
            break
    facts.update(error="; ".join(failures) or "not probed", probe_ms=int((time.monotonic() - started) * 1000))
    return facts


def probe_nodes(targets: Sequence[ProbeTarget], settings: ProbeSettings | None = None) -> dict[str, dict[str, Any]]:
    """Probe all targets in parallel within ``settings.deadline``; {name: jexida_facts}. Never raises."""
    settings = settings or ProbeSettings()
    if not targets:
        return {}
    deadline_at = time.monotonic() + settings.deadline
    results: dict[str, dict[str, Any]] = {}
    with ThreadPoolExecutor(max_workers=max(1, min(settings.forks, len(targets))),
                            thread_name_prefix="jexida-probe") as pool:
        futures = {target.name: pool.submit(probe_node, target, settings, deadline_at) for target in targets}
        for name, future in futures.items():
            try:
                # Every probe ends by itself at the deadline (subprocess timeout); this is a backstop.
                results[name] = future.result(timeout=max(0.0, deadline_at - time.monotonic()) + 5)
            except Exception as exc:  # a probe must never fail the inventory
                facts = empty_facts()
                facts.update(reachable=False, probed_at=_now(), error=f"probe failed: {exc or type(exc).__name__}")
                results[name] = facts
    return results


# --- the plugin -----------------------------------------------------------------------------


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    """Nodes from the jexida registry, with live facts and groups."""

    NAME = "jexida.cluster.jexida"

    def verify_file(self, path: str) -> bool:
        return bool(super().verify_file(path)) and path.endswith((".jexida.yml", ".jexida.yaml"))

    def parse(self, inventory: Any, loader: Any, path: str, cache: bool = True) -> None:
        super().parse(inventory, loader, path, cache=cache)
        self._load_config(path)
        nodes = self._load_nodes(path)
        try:
            thresholds = merge_thresholds(self.get_option("thresholds"))
        except ValueError as exc:
            raise AnsibleParserError(f"{path}: {exc}") from exc
        probing = bool(self.get_option("probe"))
        facts = self._facts(nodes, path, cache) if probing else {}
        self._populate(nodes, facts, thresholds, probing)

    # -- configuration

    def _load_config(self, path: str) -> dict[str, Any]:
        try:
            config = self._read_config_data(path)
        except AnsibleError as exc:
            message = str(exc)
            raise AnsibleParserError(message if path in message else f"{path}: {message}") from exc
        # set_options() ignores keys it does not know: a typo would silently do nothing.
        unknown = sorted(str(key) for key in config if key not in self.option_definitions)
        if unknown:
            raise AnsibleParserError(
                f"{path}: unknown option(s) {', '.join(repr(k) for k in unknown)} for plugin {self.NAME}; "
                f"valid options: {', '.join(sorted(self.option_definitions))}"
            )
        # The config manager turns any unknown word into false for a bool ("probe: maybe").
        for key, value in config.items():
            kind = (self.option_definitions.get(key) or {}).get("type")
            if kind in ("bool", "boolean") and not isinstance(value, bool):
                try:
                    boolean(value, strict=True)
                except TypeError:
                    raise AnsibleParserError(f"{path}: option '{key}' must be true or false, got {value!r}") from None
        for option, minimum in (("connect_timeout", 1), ("deadline", 0.1), ("retries", 0), ("forks", 1)):
            value = self.get_option(option)
            if value is None or value < minimum:
                raise AnsibleParserError(f"{path}: option '{option}' must be at least {minimum}, got {value!r}")
        return config

    def _load_nodes(self, path: str) -> list[dict[str, Any]]:
        try:
            inline = validate_nodes(self.get_option("nodes") or [], f"{path} (nodes:)")
        except RegistryError as exc:
            raise AnsibleParserError(str(exc)) from exc
        from_file: list[dict[str, Any]] = []
        nodes_file = self.get_option("nodes_file")
        if nodes_file:
            nodes_file = os.path.join(os.path.dirname(os.path.abspath(path)), os.path.expanduser(nodes_file))
            from_file = self._read_registry(nodes_file)
            inline_names = {node["name"] for node in inline}
            clash = sorted(node["name"] for node in from_file if node["name"] in inline_names)
            if clash:
                raise AnsibleParserError(
                    f"{path}: node(s) {', '.join(repr(n) for n in clash)} are in both 'nodes' and "
                    f"'nodes_file' ({nodes_file}); describe each node in one place only"
                )
        return [*inline, *from_file]

    def _read_registry(self, nodes_file: str) -> list[dict[str, Any]]:
        if not os.path.exists(nodes_file):
            self.display.warning(f"jexida inventory: node registry {nodes_file} does not exist yet; no nodes from it")
            return []
        try:
            # Through the loader, trusted like any inventory file, so templated vars still work.
            document = self.loader.load_from_file(nodes_file, cache="none", trusted_as_template=True)
        except AnsibleError as exc:
            message = " ".join(str(exc).split())
            raise AnsibleParserError(f"{nodes_file}: malformed YAML: {message}") from exc
        try:
            return validate_document(document, nodes_file)
        except RegistryError as exc:
            raise AnsibleParserError(str(exc)) from exc

    def _settings(self) -> ProbeSettings:
        return ProbeSettings(
            job_dir=str(self.get_option("job_dir") or DEFAULT_JOB_DIR),
            connect_timeout=int(self.get_option("connect_timeout")),
            deadline=float(self.get_option("deadline")),
            retries=int(self.get_option("retries")),
            forks=int(self.get_option("forks")),
            ssh_defaults=ansible_ssh_defaults(),
        )

    def _render_vars(self, node: Mapping[str, Any]) -> dict[str, Any]:
        # Connection vars may be templates (trusted registry strings); render what renders.
        rendered = dict(node)
        host_vars = dict(node.get("vars") or {})
        templar = self.templar.copy_with_new_env(available_variables=host_vars)
        for key, value in host_vars.items():
            if key.startswith("ansible_") and isinstance(value, str) and "{{" in value:
                try:
                    host_vars[key] = templar.template(value)
                except Exception:  # an undefined controller-only var: the raw value stays
                    host_vars[key] = value
        rendered["vars"] = host_vars
        return rendered

    # -- facts, with the cache

    def _facts(self, nodes: list[dict[str, Any]], path: str, cache: bool) -> dict[str, dict[str, Any]]:
        settings = self._settings()
        targets = {node["name"]: target_for_node(self._render_vars(node), settings.ssh_defaults)
                   for node in nodes if node["active"]}
        cache_on = bool(self.get_option("cache"))
        cache_key = self.get_cache_key(path)
        cached: Any = {}
        if cache_on and cache:
            try:
                cached = self._cache[cache_key]
            except KeyError:
                cached = {}
        fresh = isinstance(cached, Mapping) and cached.get("version") == CACHE_VERSION
        entries = cached.get("nodes", {}) if fresh else {}

        facts: dict[str, dict[str, Any]] = {}
        to_probe: list[ProbeTarget] = []
        for name, target in targets.items():
            entry = entries.get(name) if isinstance(entries, Mapping) else None
            # Through JSON, the signature's tuple comes back a list: compare as JSON.
            if isinstance(entry, Mapping) and json.dumps(entry.get("target")) == json.dumps(target.signature()):
                facts[name] = {**empty_facts(), **dict(entry.get("facts") or {})}
            else:
                to_probe.append(target)
        if to_probe:
            facts.update(probe_nodes(to_probe, settings))
        if cache_on and (to_probe or not cache):
            self._cache[cache_key] = {
                "version": CACHE_VERSION,
                "nodes": {name: {"target": targets[name].signature(), "facts": facts[name]} for name in targets},
            }
        return facts

    # -- hosts and groups

    def _populate(self, nodes: list[dict[str, Any]], facts: Mapping[str, dict[str, Any]],
                  thresholds: Mapping[str, float], probing: bool) -> None:
        strict = bool(self.get_option("strict"))
        # Always there, so `tag_gpu:&available` is a valid pattern even when nothing matches.
        fixed = ["inactive", *(["available", "unreachable", *(f"load_{g}" for g in LOAD_GROUPS)] if probing else [])]
        for group in fixed:
            self.inventory.add_group(group)
        renamed: dict[str, str] = {}
        for node in nodes:
            name = node["name"]
            node_facts = {**empty_facts(), **facts.get(name, {})}
            if node_facts.get("reachable"):
                node_facts["load_group"] = classify_load(node_facts, thresholds)
            self.inventory.add_host(name)
            for key, value in node["vars"].items():
                self.inventory.set_variable(name, key, value)
            self.inventory.set_variable(name, "ansible_host", node_facts.get("address") or node["host"])
            self.inventory.set_variable(name, "ansible_port", node["port"])
            self.inventory.set_variable(name, "ansible_user", node["user"])
            self.inventory.set_variable(name, "jexida_tags", list(node["tags"]))
            self.inventory.set_variable(name, "jexida_active", node["active"])
            self.inventory.set_variable(name, "jexida_facts", node_facts)
            for raw in node_groups(node, node_facts, probed=probing and node["active"]):
                group = self._sanitize_group_name(raw)
                if raw.startswith("tag_") and group != raw:
                    renamed[raw[4:]] = group
                self.inventory.add_group(group)
                self.inventory.add_host(name, group=group)

            host_vars = self.inventory.get_host(name).get_vars()
            self._set_composite_vars(self.get_option("compose"), host_vars, name, strict=strict)
            self._add_host_to_composed_groups(self.get_option("groups"), host_vars, name, strict=strict)
            self._add_host_to_keyed_groups(self.get_option("keyed_groups"), host_vars, name, strict=strict)
        if renamed:
            listing = ", ".join(f"{tag!r} -> {group}" for tag, group in sorted(renamed.items()))
            self.display.warning(f"jexida inventory: tags that are not valid group names were renamed: {listing}")
