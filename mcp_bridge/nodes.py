"""Nodes and live facts, read through Ansible's own inventory with the jexida plugin.

The bridge never parses the registry itself: it asks Ansible's InventoryManager, so the
nodes it sees are exactly those `ansible-inventory -i <source>` shows, with the same
connection settings, groups and patterns. Snapshots are cached for a short TTL and
refreshed in the background, so a call never waits for a probe it does not need.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ansible_collections.jexida.cluster.plugins.plugin_utils import facts as node_facts
from ansible_collections.jexida.cluster.plugins.plugin_utils import probe as node_probe
from ansible_collections.jexida.cluster.plugins.plugin_utils.worker import node_dirs

from mcp_bridge.errors import JexidaError


class NodeError(JexidaError, LookupError):
    """A node or pattern the caller named does not exist; the message lists what does."""


def init_ansible() -> None:
    """Ansible's collection loader is installed when mcp_bridge is imported (see mcp_bridge/__init__)."""


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
    job_dir: str  # where the role put the node's job folders and logs
    log_dir: str
    via: str | None = None  # the bastion this node is reached through (its hop is in connection_vars)
    # The node that runs this node's commands (ansible-runner worker); its connection is in
    # connection_vars["jexida_execution_node"] (mcp_bridge/exec_node.py reads it).
    execution_node: str | None = None
    # The role's settings recorded for the node (jexida_worker_*): a new provision keeps them.
    worker_vars: dict[str, Any] = field(default_factory=dict)

    @property
    def reachable(self) -> bool:
        return bool(self.facts.get("reachable"))

    @property
    def health(self) -> str:
        return node_facts.node_health(self.active, self.facts)


@dataclass
class Snapshot:
    nodes: dict[str, Node]
    taken_at: float  # time.monotonic()
    source: str
    inventory: Any = field(repr=False, default=None)  # the InventoryManager, for host patterns

    @property
    def age_s(self) -> float:
        return time.monotonic() - self.taken_at


class InventoryError(JexidaError):
    """The inventory config or the node registry cannot be used; the message says where and why."""


class _PluginFailed(BaseException):
    """Carries the jexida plugin's own error out of Ansible's parse loop (which catches every
    Exception and only prints it as a warning), so the caller gets one clear message."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class _ReportingPlugin:
    """The jexida inventory plugin, raising its parse errors instead of letting Ansible warn."""

    def __init__(self, plugin: Any) -> None:
        self._plugin = plugin

    def __getattr__(self, name: str) -> Any:
        return getattr(self._plugin, name)

    def parse(self, *args: Any, **kwargs: Any) -> None:
        try:
            self._plugin.parse(*args, **kwargs)
        except Exception as exc:
            raise _PluginFailed(exc) from exc


def _manager(loader: Any, source: str, use_cache: bool) -> Any:
    """Ansible's InventoryManager over one jexida config, with only the jexida plugin enabled
    (host_vars/group_vars next to the config and host patterns work as in `ansible`)."""
    from ansible.inventory.manager import InventoryManager
    from ansible.plugins.loader import inventory_loader

    class JexidaInventoryManager(InventoryManager):
        def _fetch_inventory_plugins(self) -> list[Any]:
            plugin = inventory_loader.get("jexida.cluster.jexida")
            if plugin is None:
                raise InventoryError("the jexida.cluster.jexida inventory plugin cannot be loaded: reinstall jexida")
            return [_ReportingPlugin(plugin)]

    try:
        manager = JexidaInventoryManager(loader=loader, sources=[source], cache=use_cache)
    except _PluginFailed as failed:
        message = getattr(failed.error, "message", None) or str(failed.error)
        raise InventoryError(" ".join(str(message).split())) from failed.error
    if source not in manager._inventory.processed_sources:
        raise InventoryError(f"{source} is not a jexida inventory config: its name must end in .jexida.yml and it "
                             "must hold 'plugin: jexida.cluster.jexida' (see `jexida init`)")
    return manager


def load_snapshot(source: str, *, use_cache: bool = False) -> Snapshot:
    """Parse the inventory now (probing nodes, unless the plugin's cache answers)."""
    from ansible.parsing.dataloader import DataLoader

    if not Path(source).exists():
        raise InventoryError(f"the inventory config {source} does not exist: run `jexida init` to create "
                             "your configuration, or pass --inventory PATH (or set JEXIDA_INVENTORY)")
    inventory = _manager(DataLoader(), source, use_cache)
    nodes: dict[str, Node] = {}
    for host in inventory.get_hosts("all"):
        hostvars = host.get_vars()
        facts = _plain(hostvars.get("jexida_facts") or {})
        connection_vars = {k: _plain(v) for k, v in hostvars.items() if k.startswith("ansible_")}
        if facts.get("address"):
            connection_vars["ansible_host"] = facts["address"]
        job_dir, log_dir = node_dirs(hostvars)
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
            job_dir=job_dir,
            log_dir=log_dir,
            via=str(hostvars["jexida_via"]) if hostvars.get("jexida_via") else None,
            execution_node=str(hostvars["jexida_execution_node"]) if hostvars.get("jexida_execution_node") else None,
            worker_vars={k: _plain(v) for k, v in hostvars.items() if k.startswith("jexida_worker_")},
        )
    for node in nodes.values():
        if node.execution_node:
            runner = nodes.get(node.execution_node)
            if runner is None or runner.execution_node:
                raise InventoryError(f"node {node.name!r}: jexida_execution_node={node.execution_node!r} must name "
                                     f"another node of {source}, reached directly")
            node.connection_vars[EXECUTION_NODE_VAR] = execution_node_entry(runner)
    return Snapshot(nodes=nodes, taken_at=time.monotonic(), source=source, inventory=inventory)


EXECUTION_NODE_VAR = "jexida_execution_node"


def execution_node_entry(runner: Node) -> dict[str, Any]:
    """How to reach an execution node, in the registry's node shape (what probe.target_for_node reads)."""
    connection = {k: v for k, v in runner.connection_vars.items() if k not in ("ansible_port", "ansible_user")}
    return {"name": runner.name, "host": str(connection.pop("ansible_host", runner.host)), "port": runner.port,
            "user": runner.user, "vars": connection, "worker_vars": dict(runner.worker_vars)}


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
        """Probe one node now, with the inventory plugin's own probe (one SSH round trip), and record it.

        A node behind a bastion goes through it (the hop is in its ssh args); if it does not
        answer, the probe asks the bastion too, so the error says which hop failed."""
        node = self.get(name)
        defaults = node_probe.ansible_ssh_defaults()
        target = _probe_target(node, defaults)
        bastion = self.snapshot().nodes.get(node.via) if node.via else None
        if bastion is not None:
            target = replace(target, jump=_probe_target(bastion, defaults))
        runner = self.snapshot().nodes.get(node.execution_node) if node.execution_node else None
        if runner is not None:
            from ansible_collections.jexida.cluster.plugins.plugin_utils.jump import probe_through

            target = probe_through(target, _probe_target(runner, defaults))
        facts = node_probe.probe_node(target, node_probe.ProbeSettings())
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


def _probe_target(node: Node, ssh_defaults: Mapping[str, Any]) -> Any:
    connection = {k: v for k, v in node.connection_vars.items()
                  if k not in ("ansible_host", "ansible_port", "ansible_user")}
    connection["jexida_worker_job_dir"] = node.job_dir
    return node_probe.target_for_node(
        {"name": node.name, "host": node.host, "port": node.port, "user": node.user, "vars": connection}, ssh_defaults)


def runner_inventory(nodes: Iterable[Node]) -> dict[str, Any]:
    """A per-call inventory holding only the target hosts, with their connection settings."""
    # A playbook gets the execution node's name (bootstrap registers it), not the entry the streamed runs use.
    return {"all": {"hosts": {node.name: {**node.connection_vars,
                                          **({EXECUTION_NODE_VAR: node.execution_node} if node.execution_node else {})}
                              for node in nodes}}}
