"""The node side of the core: status, the registry, checks and provisioning (every face calls these)."""

from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from ansible_collections.jexida.cluster.plugins.module_utils import registry
from ansible_collections.jexida.cluster.plugins.plugin_utils.probe import ansible_ssh_defaults, target_for_node

from mcp_bridge import models, playbook_run
from mcp_bridge.errors import BridgeError, JexidaError
from mcp_bridge.nodes import Node, NodeError, execution_node_entry, runner_inventory
from mcp_bridge.paths import BOOTSTRAP_PLAYBOOK


class NodeOps:
    """Mixed into Cluster: it provides config, directory, in_flight, _run_on, _audit, _intent, _outcome."""

    config: Any
    directory: Any
    in_flight: Any

    def _run_on(self, node: Node, command: str, timeout_s: int,
                routing_info: models.Routing | None = None) -> models.CommandResult:
        raise NotImplementedError

    def _audit(self, action: str, **fields: Any) -> dict[str, Any]:
        raise NotImplementedError

    def _intent(self, action: str, **fields: Any) -> str:
        raise NotImplementedError

    def _outcome(self, intent: str, action: str, **fields: Any) -> None:
        raise NotImplementedError

    def _info(self, node: Node, in_flight: dict[str, int]) -> models.NodeInfo:
        known = set(models.NodeFacts.model_fields)
        return models.NodeInfo(
            name=node.name, host=node.host, port=node.port, user=node.user, tags=node.tags, active=node.active,
            health=node.health, groups=node.groups, jobs_in_flight=in_flight.get(node.name, 0),  # type: ignore[arg-type]
            via=node.via, execution_node=node.execution_node,
            facts=models.NodeFacts(**{k: v for k, v in node.facts.items() if k in known}),
        )

    def status(self, fresh: bool = True) -> models.ClusterStatus:
        snapshot = self.directory.refresh() if fresh else self.directory.snapshot()
        in_flight = self.in_flight.snapshot()
        infos = [self._info(n, in_flight) for n in snapshot.nodes.values()]
        health = Counter(i.health for i in infos)
        return models.ClusterStatus(
            nodes=infos, total=len(infos), available=health["available"], unreachable=health["unreachable"],
            inactive=health["inactive"], overloaded=health["overloaded"],
            by_load_group=dict(Counter(i.facts.load_group for i in infos if i.facts.load_group)),
            jobs_in_flight=sum(in_flight.values()), facts_age_s=round(snapshot.age_s, 3),
        )

    def list_nodes(self, active_only: bool = True, tag: str | None = None) -> list[models.NodeInfo]:
        in_flight = self.in_flight.snapshot()
        nodes = self.directory.snapshot().nodes.values()
        return [self._info(n, in_flight) for n in nodes
                if (n.active or not active_only) and (tag is None or tag in n.tags)]

    def get_node(self, name: str) -> models.NodeInfo:
        return self._info(self.directory.get(name), self.in_flight.snapshot())

    def check_node(self, name: str, detailed: bool = False) -> models.NodeCheck:
        """Probe the node now (one SSH round trip); with detailed, also check its job dirs through Ansible."""
        facts = self.directory.probe(name)
        node = self.directory.get(name)
        check = models.NodeCheck(name=name, reachable=bool(facts.get("reachable")), latency_ms=facts.get("probe_ms"),
                                 error=facts.get("error"), address=facts.get("address"))
        if detailed and check.reachable:
            check.python_version = facts.get("python_version")
            check.disk_free_mb = facts.get("disk_free_mb")
            check.mem_total_mb = facts.get("mem_total_mb")
            check.mem_available_mb = facts.get("mem_available_mb")
            dirs = " && ".join(f"test -w {shlex.quote(d)}" for d in (node.job_dir, node.log_dir))
            probe = self._run_on(node, dirs, 60)  # an internal check: audited below as "check"
            check.job_dirs_writable = probe.ok
            check.detail = "" if probe.ok else (probe.stderr or probe.message or f"rc={probe.rc}")
        self._audit("check", nodes=[name], detailed=detailed, reachable=check.reachable)
        return check

    def registry_path(self) -> Path:
        """The node registry (nodes_file) of the inventory config."""
        config_path = Path(self.config.inventory)
        try:
            config = yaml.safe_load(config_path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise JexidaError(f"cannot read the inventory config {config_path}: {exc}") from exc
        nodes_file = config.get("nodes_file")
        if not nodes_file:
            raise JexidaError(f"{config_path} has no nodes_file: there is no registry to write to")
        path = Path(nodes_file).expanduser()
        return path if path.is_absolute() else (config_path.parent / path).resolve()

    def register_node(self, name: str, host: str, user: str = "jexida", ssh_port: int = 22,
                      tags: Sequence[str] = (), is_active: bool = True,
                      extra_vars: dict[str, Any] | None = None, via: str | None = None,
                      execution_node: str | None = None) -> models.RegisterResult:
        """Add or update a node in the registry (validated, atomic), then re-read the inventory.

        ``via`` names the bastion the node is reached through ("" removes it, None keeps what is stored)."""
        path = self.registry_path()
        for field, other in (("via", via), ("execution_node", execution_node)):
            if other:
                # Checked against the whole inventory before writing: a registry naming an unknown node
                # would make every later inventory read fail.
                try:
                    hop = self.directory.get(other)
                except NodeError as exc:
                    raise NodeError(f"'{field}': {exc}") from exc
                # The inventory plugin's rules for the node named there (node_spec.check_via, jump.py); a node
                # naming itself is refused by the registry's own check.
                if hop.via or hop.execution_node:
                    raise BridgeError(f"'{field}': {other!r} is itself reached through "
                                      f"{hop.via or hop.execution_node!r}; name a node the controller reaches directly")
                reached = target_for_node(execution_node_entry(hop), ansible_ssh_defaults())
                if reached.local:
                    raise BridgeError(f"'{field}': {other!r} is on a local connection (the controller itself); "
                                      f"name a node reached over SSH")
                if reached.unsupported:
                    raise BridgeError(f"'{field}': {other!r} uses ansible_connection={reached.unsupported}; "
                                      f"name a node reached over SSH")
        entry: dict[str, Any] = {"name": name, "host": host, "user": user, "port": ssh_port,
                                 "tags": list(tags), "active": is_active, "via": via,
                                 "execution_node": execution_node}
        existing = {n["name"] for n in registry.load_registry(str(path))}
        if extra_vars is None and name not in existing:
            extra_vars = self.default_connection_vars()
        if extra_vars:
            entry["vars"] = extra_vars
        intent = self._intent("register", nodes=[name], host=host, user=user, port=ssh_port, tags=list(tags))
        changed, stored = registry.upsert_node(str(path), entry)
        self._outcome(intent, "register", nodes=[name], changed=changed)
        self.directory.invalidate()
        return models.RegisterResult(name=name, changed=changed, created=name not in existing,
                                     registry=str(path), node=stored)

    def default_connection_vars(self) -> dict[str, Any]:
        """How a newly registered node is reached: the controller key, and the suite's known_hosts
        with trust on first use (bootstrap then pins the key it reads over the admin connection)."""
        key = self.config.home / "controller_ed25519"
        if not key.exists():
            return {}
        known_hosts = self.config.home / "known_hosts"
        return {
            "ansible_ssh_private_key_file": str(key),
            "ansible_ssh_common_args": f"-o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=accept-new",
        }

    def remove_node(self, name: str) -> bool:
        path = self.registry_path()
        intent = self._intent("remove", nodes=[name])
        removed = registry.remove_node(str(path), name)
        self._outcome(intent, "remove", nodes=[name], changed=removed)
        if not removed:
            raise NodeError(f"no node {name!r} in the registry {path}")
        self.directory.invalidate()
        return removed

    def _through_execution_node(self, node: Node) -> dict[str, Any]:
        """A playbook reaches a node behind an execution node through it as a bastion (it allows jumps for
        the probe anyway); bootstrap then registers the node with its execution node again, not `via`."""
        if not node.execution_node:
            return {}
        from ansible_collections.jexida.cluster.plugins.plugin_utils.jump import ViaError, via_connection_vars

        runner = self.directory.get(node.execution_node)
        try:
            hop = via_connection_vars(execution_node_entry(node), execution_node_entry(runner), ansible_ssh_defaults())
        except ViaError as exc:
            raise NodeError(f"node {node.name!r}: cannot reach it through its execution node: {exc}") from exc
        return {"jexida_via": runner.name, "ansible_ssh_common_args": hop["ansible_ssh_common_args"]}

    def provision(self, name: str, dry_run: bool = True) -> models.ProvisionResult:
        """Run jexida.cluster.bootstrap for one registered node through ansible-runner."""
        node = self.directory.get(name)
        intent = self._intent("provision", nodes=[name], dry_run=dry_run)
        inventory = runner_inventory([node])
        # The role's settings recorded at registration (folders, a bastion's jump option) and the
        # bastion of a node behind one: a new run keeps them, and registers the node with `via` again.
        inventory["all"]["hosts"][name].update(node.worker_vars, **({"jexida_via": node.via} if node.via else {}),
                                               **self._through_execution_node(node))
        outcome = playbook_run.run_playbook(
            playbook=str(BOOTSTRAP_PLAYBOOK), inventory=inventory, limit=name,
            extravars={"jexida_registry": str(self.registry_path()), "jexida_tags": node.tags},
            check=dry_run,
        )
        tasks = [models.TaskSummary(task=t.task, status=t.status, message=t.message)  # type: ignore[arg-type]
                 for t in outcome.tasks if t.host == name]
        failed = [t for t in tasks if t.status in ("failed", "unreachable")]
        report = next((t.message for t in reversed(tasks) if t.task.startswith("Show what happened")), "")
        ok = outcome.runner_status == "successful"
        message = report or ("" if ok else f"ansible-runner status {outcome.runner_status}")
        self._outcome(intent, "provision", nodes=[name], dry_run=dry_run, rc=outcome.runner_rc,
                      status=outcome.runner_status)
        if not dry_run:
            self.directory.invalidate()  # bootstrap rewrote the node's registry entry
        return models.ProvisionResult(
            name=name, dry_run=dry_run, ok=ok and not failed, status=outcome.runner_status, tasks=tasks,
            recap=outcome.recap.get(name, {}), message=message,
        )
