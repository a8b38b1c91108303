"""The bridge's core: every face (MCP server, CLI) calls these methods, nothing else.

Policy first, then placement (the pure routing function over the inventory's facts and
the commands this bridge has in flight), then execution through ansible-runner, then the
audit line. Methods block: the MCP server calls them from worker threads.
"""

from __future__ import annotations

import shlex
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from ansible_collections.jexida.cluster.plugins.module_utils import registry

from mcp_bridge import execution, models, routing, settings
from mcp_bridge.audit import AuditLog
from mcp_bridge.config import BridgeConfig
from mcp_bridge.errors import JexidaError
from mcp_bridge.nodes import Node, NodeDirectory, NodeError, init_ansible, runner_inventory
from mcp_bridge.paths import BOOTSTRAP_PLAYBOOK
from mcp_bridge.policy import CommandPolicy, PolicyDecision


class BridgeError(JexidaError):
    """Bad input from the caller: the message says what was wrong and what to do."""


@dataclass
class InFlight:
    """Commands this bridge is running, per node: routing counts them before any probe can."""

    counts: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @contextmanager
    def hold(self, *nodes: str) -> Iterator[None]:
        with self.lock:
            for node in nodes:
                self.counts[node] += 1
        try:
            yield
        finally:
            with self.lock:
                for node in nodes:
                    self.counts[node] -= 1
                    if self.counts[node] <= 0:
                        del self.counts[node]

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return dict(self.counts)


class PolicySource:
    """The policy file, read on first use and again whenever it changes on disk."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[float, int] | None = None
        self._policy: CommandPolicy | None = None

    def current(self) -> CommandPolicy:
        stamp: tuple[float, int] | None = None
        if self.path is not None:
            try:
                info = self.path.stat()
                stamp = (info.st_mtime, info.st_size)
            except OSError:
                stamp = None  # from_file says what is wrong with a missing file
        with self._lock:
            if self._policy is None or stamp != self._stamp or (stamp is None and self.path is not None):
                self._policy = CommandPolicy.from_file(self.path)
                self._stamp = stamp
            return self._policy


def _node_view(node: Node) -> routing.NodeView:
    return routing.NodeView(name=node.name, active=node.active, tags=tuple(node.tags), facts=node.facts)


def _routing_model(decision: routing.RoutingDecision) -> models.Routing:
    return models.Routing(
        chosen=decision.node,
        reason=decision.reason,
        candidates=[models.Candidate(node=c.node, score=c.score, excluded=c.excluded) for c in decision.candidates],
    )


class Cluster:
    """One bridge: nodes, policy, execution and audit, shared by all faces."""

    def __init__(self, config: BridgeConfig) -> None:
        self.config = config
        self.directory = NodeDirectory(config.inventory, ttl_s=config.settings.facts_ttl_s)
        self._policy_source = PolicySource(config.policy_file)
        self.audit = AuditLog(config.home / "audit.jsonl")
        self.in_flight = InFlight()
        self._runs = threading.BoundedSemaphore(settings.MAX_PARALLEL_RUNS)
        self._jobs: Any = None
        init_ansible()
        execution.skip_idle_wait_after_exit()

    @property
    def jobs(self) -> Any:
        """The tracked-jobs manager (SQLite in the state folder), made on first use."""
        if self._jobs is None:
            from mcp_bridge.jobs import JobManager

            self._jobs = JobManager(self)
        return self._jobs

    @property
    def policy(self) -> CommandPolicy:
        """The command policy, read again when its file changes (a broken file is an error per call)."""
        return self._policy_source.current()

    # --- helpers ------------------------------------------------------------------------

    def _audit(self, action: str, **fields: Any) -> None:
        self.audit.append(face=self.config.face, caller=self.config.caller, action=action, **fields)

    def check_timeout(self, timeout_s: int) -> int:
        if not 1 <= int(timeout_s) <= settings.MAX_TIMEOUT_S:
            raise BridgeError(f"timeout_s must be between 1 and {settings.MAX_TIMEOUT_S} seconds, got {timeout_s}")
        return int(timeout_s)

    def check_command(self, command: str) -> PolicyDecision:
        """The policy's decision on a command (empty commands are a caller error)."""
        if not command.strip():
            raise BridgeError("the command is empty: pass the shell command to run")
        return self.policy.check(command)

    def busy(self) -> dict[str, int]:
        """Work on each node that its last probe cannot have counted: commands running now through
        this bridge, and tracked jobs started (or being started) since that probe."""
        counts = Counter(self.in_flight.snapshot())
        if self._jobs is not None:
            counts.update(self._jobs.jobs_in_flight())
        return dict(counts)

    def _rejected(self, command: str) -> models.CommandResult | None:
        decision = self.check_command(command)
        if decision.allowed:
            return None
        self._audit("command", command=command, decision=f"rejected:{decision.rule}")
        return models.CommandResult(
            command=command, ok=False, status="rejected", rule=decision.rule, message=decision.reason,
        )

    def _execute(self, node: Node, command: str, timeout_s: int,
                 routing_info: models.Routing | None = None) -> models.CommandResult:
        """Run one command on one node through ansible-runner and turn the outcome into a result."""
        with self._runs, self.in_flight.hold(node.name):
            outcome = execution.run_shell(
                inventory=runner_inventory([node]), host_pattern=node.name, command=command,
                timeout_s=timeout_s, output_cap=self.config.settings.output_cap,
            )
        return self._result(node, command, timeout_s, outcome, routing_info, outcome.hosts.get(node.name))

    def _result(self, node: Node, command: str, timeout_s: int, outcome: execution.RunOutcome,
                routing_info: models.Routing | None, result: execution.HostResult | None) -> models.CommandResult:
        """One host's outcome as a CommandResult, with a message saying what went wrong."""
        if result is None:  # Ansible ended before the host reported (killed, bad inventory)
            status = "timeout" if outcome.runner_status == "timeout" else "failed"
            message = f"ansible-runner ended with status {outcome.runner_status} and no result for {node.name}"
            return models.CommandResult(node=node.name, command=command, ok=False, status=status,
                                        duration_ms=outcome.duration_ms, message=message, routing=routing_info)
        message = ""
        if result.status == "unreachable":
            message = f"{node.name} is unreachable: {result.msg.strip()}"
            self.directory.mark_unreachable(node.name, result.msg.strip())
        elif result.status == "timeout":
            message = f"stopped on {node.name} after {timeout_s}s (timeout_s): the process was killed on the node"
        elif result.status == "failed" and result.rc is None:
            message = result.msg.strip()
        return models.CommandResult(
            node=node.name, command=command, rc=result.rc, ok=result.status == "succeeded",
            status=result.status, stdout=result.stdout, stderr=result.stderr, duration_ms=outcome.duration_ms,
            truncated=result.truncated, stdout_bytes=result.stdout_bytes, stderr_bytes=result.stderr_bytes,
            message=message, routing=routing_info,
        )

    def _log_result(self, result: models.CommandResult, action: str = "command") -> models.CommandResult:
        self._audit(action, command=result.command, nodes=[result.node] if result.node else [],
                    decision="allowed", rc=result.rc, status=result.status)
        return result

    def views(self) -> list[routing.NodeView]:
        """The nodes as the routing function sees them."""
        return [_node_view(n) for n in self.directory.snapshot().nodes.values()]

    # --- commands -----------------------------------------------------------------------

    def run(self, command: str, requires_os: str | None = None, requires_arch: str | None = None,
            requires_tags: Sequence[str] = (), timeout_s: int = 300) -> models.CommandResult:
        """Route to the best capable node and run; one retry elsewhere if the node is unreachable."""
        timeout_s = self.check_timeout(timeout_s)
        rejected = self._rejected(command)
        if rejected:
            return rejected
        requirements = routing.Requirements(os=requires_os, arch=requires_arch, tags=tuple(requires_tags))
        tried: list[str] = []
        while True:
            decision = routing.choose_node(requirements, self.views(), self.busy())
            info = _routing_model(decision)
            if tried:
                info.reason = f"{info.reason} (after {', '.join(tried)} turned out unreachable)"
            if decision.node is None:
                result = models.CommandResult(command=command, ok=False, status="unreachable",
                                              message=decision.reason, routing=info)
                return self._log_result(result)
            result = self._execute(self.directory.get(decision.node), command, timeout_s, info)
            if result.status != "unreachable" or len(tried) >= 1:
                return self._log_result(result)
            tried.append(decision.node)

    def offload(self, command: str, node_name: str, timeout_s: int = 300) -> models.CommandResult:
        """Run on a named node (it must exist; an unreachable one reports so)."""
        timeout_s = self.check_timeout(timeout_s)
        node = self.directory.get(node_name)
        rejected = self._rejected(command)
        if rejected:
            rejected.node = node_name
            return rejected
        info = models.Routing(chosen=node.name, reason=f"named by the caller ({node.health})")
        if not node.active:
            result = models.CommandResult(node=node.name, command=command, ok=False, status="unreachable",
                                          message=f"{node.name} is inactive in the registry: activate it first",
                                          routing=info)
            return self._log_result(result)
        return self._log_result(self._execute(node, command, timeout_s, info))

    def parallel(self, commands: Sequence[str], requires_os: str | None = None, requires_arch: str | None = None,
                 requires_tags: Sequence[str] = (), timeout_s: int = 300) -> models.ParallelResult:
        """Run all commands at once, placed by load; a rejected command fails alone."""
        timeout_s = self.check_timeout(timeout_s)
        if not commands:
            raise BridgeError("commands is empty: pass at least one command")
        started = time.monotonic()
        results: list[models.CommandResult | None] = [None] * len(commands)
        runnable: list[int] = []
        for index, command in enumerate(commands):
            rejected = self._rejected(command)
            if rejected:
                results[index] = rejected
            else:
                runnable.append(index)
        requirements = routing.Requirements(os=requires_os, arch=requires_arch, tags=tuple(requires_tags))
        placements = routing.place_many(requirements, len(runnable), self.views(), self.busy())
        placed: list[tuple[int, Node, models.Routing]] = []
        for index, decision in zip(runnable, placements, strict=True):
            info = _routing_model(decision)
            if decision.node is None:
                results[index] = self._log_result(models.CommandResult(
                    command=commands[index], ok=False, status="unreachable", message=info.reason, routing=info))
            else:
                placed.append((index, self.directory.get(decision.node), info))
        if placed:
            # One Ansible run for the whole batch: each command on its node, all at once.
            aliases = {f"{node.name}__cmd{index}": (index, node, info) for index, node, info in placed}
            with self._runs, self.in_flight.hold(*(node.name for _, node, _ in placed)):
                outcome = execution.run_shell_batch(
                    [(alias, node.connection_vars, commands[index]) for alias, (index, node, _) in aliases.items()],
                    timeout_s=timeout_s, output_cap=self.config.settings.output_cap,
                )
            for alias, (index, node, info) in aliases.items():
                result = self._result(node, commands[index], timeout_s, outcome, info, outcome.hosts.get(alias))
                results[index] = self._log_result(result)
        done = [r for r in results if r is not None]
        return models.ParallelResult(
            results=done, duration_ms=int((time.monotonic() - started) * 1000),
            succeeded=sum(r.ok for r in done), failed=sum(not r.ok for r in done),
        )

    def broadcast(self, command: str, pattern: str, timeout_s: int = 300) -> models.BroadcastResult:
        """Run on every node matching an Ansible host pattern, in one Ansible run."""
        timeout_s = self.check_timeout(timeout_s)
        names = self.directory.match(pattern)
        started = time.monotonic()
        rejected = self._rejected(command)
        if rejected:
            results = [rejected.model_copy(update={"node": name}) for name in names]
        else:
            nodes = [self.directory.get(name) for name in names]
            with self._runs, self.in_flight.hold(*names):
                outcome = execution.run_shell(
                    inventory=runner_inventory(nodes), host_pattern="all", command=command,
                    timeout_s=timeout_s, output_cap=self.config.settings.output_cap,
                )
            results = [self._result(node, command, timeout_s, outcome, None, outcome.hosts.get(node.name))
                       for node in nodes]
            self._audit("broadcast", command=command, nodes=names, decision="allowed",
                        rc=max((r.rc or 0) for r in results) if results else None, pattern=pattern)
        return models.BroadcastResult(
            pattern=pattern, command=command, results=results, matched=names,
            succeeded=sum(r.ok for r in results), failed=sum(not r.ok for r in results),
            duration_ms=int((time.monotonic() - started) * 1000),
        )

    # --- nodes --------------------------------------------------------------------------

    def _info(self, node: Node, in_flight: dict[str, int]) -> models.NodeInfo:
        known = set(models.NodeFacts.model_fields)
        return models.NodeInfo(
            name=node.name, host=node.host, port=node.port, user=node.user, tags=node.tags, active=node.active,
            health=node.health, groups=node.groups, jobs_in_flight=in_flight.get(node.name, 0),  # type: ignore[arg-type]
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
            probe = self._execute(node, dirs, 60)
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
            raise BridgeError(f"cannot read the inventory config {config_path}: {exc}") from exc
        nodes_file = config.get("nodes_file")
        if not nodes_file:
            raise BridgeError(f"{config_path} has no nodes_file: there is no registry to write to")
        path = Path(nodes_file).expanduser()
        return path if path.is_absolute() else (config_path.parent / path).resolve()

    def register_node(self, name: str, host: str, user: str = "jexida", ssh_port: int = 22,
                      tags: Sequence[str] = (), is_active: bool = True,
                      extra_vars: dict[str, Any] | None = None) -> models.RegisterResult:
        """Add or update a node in the registry (validated, atomic), then re-read the inventory."""
        path = self.registry_path()
        entry: dict[str, Any] = {"name": name, "host": host, "user": user, "port": ssh_port,
                                 "tags": list(tags), "active": is_active}
        existing = {n["name"] for n in registry.load_registry(str(path))}
        if extra_vars is None and name not in existing:
            extra_vars = self.default_connection_vars()
        if extra_vars:
            entry["vars"] = extra_vars
        changed, stored = registry.upsert_node(str(path), entry)
        self._audit("register", nodes=[name], changed=changed)
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
        removed = registry.remove_node(str(path), name)
        if not removed:
            raise NodeError(f"no node {name!r} in the registry {path}")
        self._audit("remove", nodes=[name])
        self.directory.invalidate()
        return removed

    def provision(self, name: str, dry_run: bool = True) -> models.ProvisionResult:
        """Run playbooks/bootstrap.yml for one registered node through ansible-runner."""
        node = self.directory.get(name)
        outcome = execution.run_playbook(
            playbook=str(BOOTSTRAP_PLAYBOOK), inventory=runner_inventory([node]), limit=name,
            extravars={"jexida_registry": str(self.registry_path()), "jexida_tags": node.tags},
            check=dry_run,
        )
        tasks = [models.TaskSummary(task=t.task, status=t.status, message=t.message)  # type: ignore[arg-type]
                 for t in outcome.tasks if t.host == name]
        failed = [t for t in tasks if t.status in ("failed", "unreachable")]
        report = next((t.message for t in reversed(tasks) if t.task.startswith("Show what happened")), "")
        ok = outcome.runner_status == "successful"
        message = report or ("" if ok else f"ansible-runner status {outcome.runner_status}")
        self._audit("provision", nodes=[name], dry_run=dry_run, rc=outcome.runner_rc)
        if not dry_run:
            self.directory.invalidate()  # bootstrap rewrote the node's registry entry
        return models.ProvisionResult(
            name=name, dry_run=dry_run, ok=ok and not failed, status=outcome.runner_status, tasks=tasks,
            recap=outcome.recap.get(name, {}), message=message,
        )


__all__ = ["BridgeConfig", "BridgeError", "Cluster", "NodeError"]
