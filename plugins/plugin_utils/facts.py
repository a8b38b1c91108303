# Copyright (c) jexida-cluster team
# Apache License 2.0 (see the collection's galaxy.yml)
"""The jexida inventory's facts about a node: the probe script, its parser, load groups, health.

Pure functions, no I/O beyond reading the probe script: the inventory plugin, the bridge's
routing and its status all decide "reachable", "overloaded" and "available" here, so the
three can never disagree.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

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
_BEGIN = "__JEXIDA_PROBE_BEGIN__ 1"
_END = "__JEXIDA_PROBE_END__"

PROBE_SCRIPT_FILE = Path(__file__).with_name("probe.sh")
HEALTH_STATES: tuple[str, ...] = ("available", "overloaded", "unreachable", "inactive", "unprobed")


@lru_cache(maxsize=1)
def _script_template() -> str:
    lines = PROBE_SCRIPT_FILE.read_text().splitlines()
    return "\n".join(line for line in lines if not line.startswith("#")) + "\n"


def probe_script(job_dir: str) -> str:
    """The POSIX sh script one probe runs on a node (read from stdin by ``/bin/sh -s``)."""
    return (
        _script_template().replace("@JOB_DIR@", shlex.quote(job_dir))
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
        key, _sep, value = line.partition(":")
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


def node_health(active: bool, facts: Mapping[str, Any] | None) -> str:
    """One of HEALTH_STATES: the one place that decides a node's health from its facts."""
    facts = facts or {}
    if not active:
        return "inactive"
    if facts.get("reachable") is None:
        return "unprobed"
    if not facts.get("reachable"):
        return "unreachable"
    if facts.get("load_group") == "overloaded":
        return "overloaded"
    return "available"


def node_groups(node: Mapping[str, Any], facts: Mapping[str, Any] | None, probed: bool = True) -> list[str]:
    """The raw (unsanitized) group names a node belongs to, given its facts."""
    groups = [f"tag_{tag}" for tag in node.get("tags", [])]
    health = node_health(bool(node.get("active", True)), facts if probed else None)
    if health == "inactive":
        return [*groups, "inactive"]
    if health == "unprobed":
        return groups
    if health == "unreachable":
        return [*groups, "unreachable"]
    facts = facts or {}
    for prefix, key in (("os", "os"), ("arch", "arch")):
        if facts.get(key):
            groups.append(f"{prefix}_{facts[key]}")
    groups.extend(f"cap_{cap}" for cap in facts.get("capabilities") or [])
    groups.append(f"load_{facts.get('load_group') or 'normal'}")
    if health == "available":
        groups.append("available")
    return groups


def reuse_cached(targets: Mapping[str, Any], cached: Any, version: int) -> tuple[dict[str, dict[str, Any]], list[Any]]:
    """Split probe targets by the inventory cache: ({name: cached facts}, [targets to probe]).

    A cached entry counts only for the same cache ``version`` and the same target signature
    (address, port, user, connection, job folder, bastion): anything else is probed again.
    """
    fresh = isinstance(cached, Mapping) and cached.get("version") == version
    entries = cached.get("nodes", {}) if fresh else {}
    facts: dict[str, dict[str, Any]] = {}
    to_probe: list[Any] = []
    for name, target in targets.items():
        entry = entries.get(name) if isinstance(entries, Mapping) else None
        # Through JSON, the signature's tuples come back as lists: compare as JSON.
        if isinstance(entry, Mapping) and json.dumps(entry.get("target")) == json.dumps(target.signature()):
            facts[name] = {**empty_facts(), **dict(entry.get("facts") or {})}
        else:
            to_probe.append(target)
    return facts, to_probe
