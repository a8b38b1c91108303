"""Nodes and live facts, read through Ansible's own inventory with the jexida plugin.

The bridge never parses the registry itself: it asks Ansible's InventoryManager, so the
nodes it sees are exactly those `ansible-inventory -i <source>` shows, with the same
connection settings, groups and patterns. Snapshots are cached for a short TTL and
refreshed in the background, so a call never waits for a probe it does not need.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcp_bridge.paths import REPO_ROOT

os.environ.setdefault("ANSIBLE_CONFIG", str(REPO_ROOT / "ansible.cfg"))
COLLECTIONS_PATH = REPO_ROOT / ".cache" / "collections"


class NodeError(LookupError):
    """A node or pattern the caller named does not exist; the message lists what does."""


_ansible_ready = threading.Lock()
_ansible_initialised = False


def init_ansible() -> None:
    """Install Ansible's collection loader once, so jexida.cluster.* resolves in-process."""
    global _ansible_initialised
    with _ansible_ready:
        if _ansible_initialised:
            return
        from ansible.plugins.loader import init_plugin_loader

        init_plugin_loader([str(COLLECTIONS_PATH)])
        _ansible_initialised = True


def _plain(value: Any) -> Any:
    """Ansible's tagged strings and containers as plain Python values."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value


@dataclass
class Node:
    """One inventory host as the bridge uses it."""

    name: str
    host: str
    port: int
    user: str
    tags: list[str]
    active: bool
    facts: dict[str, Any]
    groups: list[str]
    connection_vars: dict[str, Any]  # the ansible_* vars Ansible would use for this host

    @property
    def reachable(self) -> bool:
        return bool(self.facts.get("reachable"))

    @property
    def health(self) -> str:
        if not self.active:
            return "inactive"
        if self.facts.get("reachable") is None:
            return "unprobed"
        if not self.reachable:
            return "unreachable"
        if self.facts.get("load_group") == "overloaded":
            return "overloaded"
        return "available"


@dataclass
class Snapshot:
    nodes: dict[str, Node]
    taken_at: float  # time.monotonic()
    source: str
    inventory: Any = field(repr=False, default=None)  # the InventoryManager, for host patterns

    @property
    def age_s(self) -> float:
        return time.monotonic() - self.taken_at


def load_snapshot(source: str, *, use_cache: bool = False) -> Snapshot:
    """Parse the inventory now (probing nodes, unless the plugin's cache answers)."""
    init_ansible()
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader

    inventory = InventoryManager(loader=DataLoader(), sources=[source], cache=use_cache)
    nodes: dict[str, Node] = {}
    for host in inventory.get_hosts("all"):
        hostvars = host.get_vars()
        facts = _plain(hostvars.get("jexida_facts") or {})
        connection_vars = {k: _plain(v) for k, v in hostvars.items() if k.startswith("ansible_")}
        if facts.get("address"):
            connection_vars["ansible_host"] = facts["address"]
        nodes[host.name] = Node(
            name=host.name,
            host=str(hostvars.get("ansible_host", host.name)),
            port=int(hostvars.get("ansible_port", 22) or 22),
            user=str(hostvars.get("ansible_user", "")),
            tags=[str(t) for t in _plain(hostvars.get("jexida_tags") or [])],
            active=bool(hostvars.get("jexida_active", True)),
            facts=facts,
            groups=sorted(g.name for g in host.get_groups() if g.name not in ("all", "ungrouped")),
            connection_vars=connection_vars,
        )
    return Snapshot(nodes=nodes, taken_at=time.monotonic(), source=source, inventory=inventory)


class NodeDirectory:
    """The bridge's view of the cluster: a cached snapshot, refreshed in the background."""

    def __init__(self, source: str | Path, ttl_s: float = 15.0) -> None:
        self.source = str(source)
        self.ttl_s = ttl_s
        self._snapshot: Snapshot | None = None
        self._lock = threading.Lock()
        self._refreshing = threading.Lock()

    def snapshot(self) -> Snapshot:
        """The current snapshot; the first call waits for a probe, later ones never do."""
        current = self._snapshot
        if current is None:
            return self.refresh()
        if current.age_s > self.ttl_s and not self._refreshing.locked():
            threading.Thread(target=self._refresh_quietly, name="jexida-facts", daemon=True).start()
        return current

    def refresh(self) -> Snapshot:
        """Probe now and wait for it (used at start-up and by explicit status calls)."""
        with self._refreshing:
            fresh = load_snapshot(self.source)
            with self._lock:
                self._snapshot = fresh
            return fresh

    def _refresh_quietly(self) -> None:
        try:
            self.refresh()
        except Exception as exc:  # a failed background probe keeps the old snapshot
            print(f"jexida: background inventory refresh failed: {exc}", flush=True, file=sys.stderr)

    def invalidate(self) -> None:
        """Forget the snapshot (the registry changed): the next call reads the inventory again."""
        with self._lock:
            self._snapshot = None

    def probe(self, name: str) -> dict[str, Any]:
        """Probe one node now, with the inventory plugin's own probe (one SSH round trip), and record it."""
        from ansible_collections.jexida.cluster.plugins.inventory import jexida  # type: ignore[import-not-found]

        node = self.get(name)
        connection = {k: v for k, v in node.connection_vars.items()
                      if k not in ("ansible_host", "ansible_port", "ansible_user")}
        target = jexida.target_for_node(
            {"name": node.name, "host": node.host, "port": node.port, "user": node.user, "vars": connection},
            jexida.ansible_ssh_defaults(),
        )
        facts = jexida.probe_node(target, jexida.ProbeSettings())
        with self._lock:
            node.facts = {**node.facts, **{k: v for k, v in facts.items() if k != "load_group"}}
        return node.facts

    def mark_unreachable(self, name: str, reason: str) -> None:
        """Record what a command just learned, without waiting for the next probe."""
        with self._lock:
            if self._snapshot and name in self._snapshot.nodes:
                node = self._snapshot.nodes[name]
                node.facts = {**node.facts, "reachable": False, "error": reason}

    def get(self, name: str) -> Node:
        nodes = self.snapshot().nodes
        if name not in nodes:
            known = ", ".join(sorted(nodes)) or "none"
            raise NodeError(f"unknown node {name!r}: the inventory ({self.source}) has: {known}")
        return nodes[name]

    def match(self, pattern: str) -> list[str]:
        """Host names matching an Ansible host pattern (`tag_gpu:&available`), like `ansible PATTERN`."""
        snap = self.snapshot()
        if not pattern.strip():
            raise NodeError("empty host pattern: use `all`, a node name, or a group like tag_gpu:&available")
        hosts = [h.name for h in snap.inventory.get_hosts(pattern)]
        if not hosts:
            groups = sorted(snap.inventory.groups)
            raise NodeError(
                f"no node matches the pattern {pattern!r}; groups are: {', '.join(groups)}"
            )
        return hosts


def runner_inventory(nodes: Iterable[Node]) -> dict[str, Any]:
    """A per-call inventory holding only the target hosts, with their connection settings."""
    return {"all": {"hosts": {node.name: dict(node.connection_vars) for node in nodes}}}
