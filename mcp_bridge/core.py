"""The bridge's core: every face (MCP server, HTTP API, web pages, CLI) calls these methods.

Per command: the policy's decision and the person's answer (gate.py), then placement (the
pure routing function over the inventory's facts and the work in flight), an audit intent
line written before anything runs, execution through ansible-runner, and the outcome line.
Methods block: the servers call them from worker threads.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from mcp_bridge import execution, gate, models, routing, settings
from mcp_bridge.audit import AuditLog
from mcp_bridge.call import Call, NodeRun
from mcp_bridge.config import BridgeConfig
from mcp_bridge.errors import BridgeError
from mcp_bridge.gate import Approval, Verdict
from mcp_bridge.node_ops import NodeOps
from mcp_bridge.nodes import Node, NodeDirectory, NodeError
from mcp_bridge.policy import CommandPolicy, PolicyDecision
from mcp_bridge.watched_files import light_commands, policy_source

# The face a call comes through, when it differs from the bridge's own (the HTTP API inside an MCP
# HTTP server): set by that face around its call; worker threads inherit it (anyio copies contexts).
current_face: ContextVar[str | None] = ContextVar("jexida_face", default=None)


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


def _node_view(node: Node) -> routing.NodeView:
    return routing.NodeView(name=node.name, active=node.active, tags=tuple(node.tags), facts=node.facts,
                            local=str(node.connection_vars.get("ansible_connection", "")) in settings.LOCAL_CONNECTIONS)


def _routing_model(decision: routing.RoutingDecision) -> models.Routing:
    return models.Routing(
        chosen=decision.node,
        reason=decision.reason,
        candidates=[models.Candidate(node=c.node, score=c.score, excluded=c.excluded) for c in decision.candidates],
    )


class Cluster(NodeOps):
    """One bridge: nodes, policy, execution and audit, shared by all faces."""

    def __init__(self, config: BridgeConfig) -> None:
        self.config = config
        self.directory = NodeDirectory(config.inventory, ttl_s=config.settings.facts_ttl_s)
        self._policy_source = policy_source(config.policy_file)
        self.light_commands = light_commands(config.inventory)
        self.audit = AuditLog(config.home / "audit.jsonl")
        self.in_flight = InFlight()
        self._runs = threading.BoundedSemaphore(settings.MAX_PARALLEL_RUNS)
        self._jobs: Any = None
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

    # --- audit: an intent line before anything runs, the outcome after -------------------

    def _audit(self, action: str, **fields: Any) -> dict[str, Any]:
        face = current_face.get() or self.config.face
        return self.audit.append(face=face, caller=self.config.caller, action=action, **fields)

    def _intent(self, action: str, **fields: Any) -> str:
        return str(self._audit(action, phase="intent", **fields)["mac"])

    def _outcome(self, intent: str, action: str, **fields: Any) -> None:
        self._audit(action, phase="outcome", intent=intent, **fields)

    # --- checks -------------------------------------------------------------------------

    def check_timeout(self, timeout_s: int) -> int:
        if not 1 <= int(timeout_s) <= settings.MAX_TIMEOUT_S:
            raise BridgeError(f"timeout_s must be between 1 and {settings.MAX_TIMEOUT_S} seconds, got {timeout_s}")
        return int(timeout_s)

    def check_command(self, command: str) -> PolicyDecision:
        """The policy's decision on a command (empty commands are a caller error)."""
        if not command.strip():
            raise BridgeError("the command is empty: pass the shell command to run")
        return self.policy.check(command)

    def unsure(self, commands: Sequence[str]) -> list[tuple[str, PolicyDecision]]:
        """The commands the policy wants a person's yes for: what a face asks about before calling."""
        return [(c, d) for c in commands if (d := self.check_command(c)).decision == "confirm"]

    def judge(self, command: str, approval: Approval = gate.NOBODY) -> Verdict:
        """Run it or not: the policy's decision with the person's answer (or the fallback)."""
        policy = self.policy
        return gate.decide(self.check_command(command), command, approval, policy.on_unsure,
                           str(self.config.policy_file or ""))

    def _kill(self, runs: list[NodeRun]) -> None:
        """Stop runs on their nodes the way a timeout does (the whole process group), one Ansible run."""
        by_node: dict[str, list[str]] = {}
        for run in runs:
            by_node.setdefault(run.node, []).append(run.run_id)
        targets = {}
        for name, run_ids in by_node.items():
            try:
                targets[name] = (self.directory.get(name).connection_vars, list(dict.fromkeys(run_ids)))
            except NodeError:
                continue
        if targets:
            outcome = execution.kill_runs(targets)
            for name in targets:
                host = outcome.hosts.get(name)
                if host is None:
                    said = f"no answer ({outcome.runner_status})"
                else:
                    said = " ".join(host.stdout.split()) if host.ok else f"{host.status}: {host.msg or host.stderr}"
                print(f"jexida: cancel on {name}: {said}", file=sys.stderr, flush=True)

    @contextmanager
    def _tracking(self, call: Call, runs: list[NodeRun]) -> Iterator[None]:
        """Hold the runs in the call while they run, so a cancel can find and stop them."""
        call.started(runs, self._kill)
        try:
            yield
        finally:
            call.finished(runs)

    def _refuse(self, verdict: Verdict, node: str | None = None, action: str = "command") -> models.CommandResult:
        self._audit(action, command=verdict.command, nodes=[node] if node else None,
                    decision=verdict.audit_decision, answer=verdict.answer, status=verdict.status)
        return verdict.refused(node)

    def busy(self) -> dict[str, int]:
        """Work on each node that its last probe cannot have counted: commands running now through
        this bridge, and tracked jobs started (or being started) since that probe."""
        counts = Counter(self.in_flight.snapshot())
        if self._jobs is not None:
            counts.update(self._jobs.jobs_in_flight())
        return dict(counts)

    def views(self) -> list[routing.NodeView]:
        """The nodes as the routing function sees them."""
        return [_node_view(n) for n in self.directory.snapshot().nodes.values()]

    # --- execution ----------------------------------------------------------------------

    def _run_on(self, node: Node, command: str, timeout_s: int, routing_info: models.Routing | None = None,
                call: Call | None = None) -> models.CommandResult:
        """Run one command on one node through ansible-runner (no policy, no audit: callers do both)."""
        call = call or Call()
        run = NodeRun(node.name, execution.new_run_id())
        with self._runs, self.in_flight.hold(node.name), self._tracking(call, [run]):
            outcome = execution.run_shell(
                nodes={node.name: node.connection_vars}, command=command,
                timeout_s=timeout_s, output_cap=self.config.settings.output_cap, run_id=run.run_id,
                give_up=lambda: call.canceled_for(settings.CANCEL_GRACE_S),
            )
        return self._result(node, command, timeout_s, outcome, routing_info, outcome.hosts.get(node.name), call)

    def _execute(self, node: Node, command: str, timeout_s: int, routing_info: models.Routing | None,
                 verdict: Verdict, call: Call) -> models.CommandResult:
        intent = self._intent("command", command=command, nodes=[node.name], decision=verdict.audit_decision,
                              answer=verdict.answer)
        result = self._run_on(node, command, timeout_s, routing_info, call)
        return self._finish(intent, result, verdict)

    def _finish(self, intent: str, result: models.CommandResult, verdict: Verdict) -> models.CommandResult:
        if verdict.message:  # a person's yes or a fallback let it run: say so
            result.message = f"{result.message} ({verdict.message})" if result.message else verdict.message
        self._outcome(intent, "command", nodes=[result.node] if result.node else None, rc=result.rc,
                      status=result.status)
        return result

    def _result(self, node: Node, command: str, timeout_s: int, outcome: execution.RunOutcome,
                routing_info: models.Routing | None, result: execution.HostResult | None,
                call: Call | None = None) -> models.CommandResult:
        """One host's outcome as a CommandResult, with a message saying what went wrong."""
        canceled = call is not None and call.canceled
        if result is None:  # Ansible ended before the host reported (killed, bad inventory)
            status = "canceled" if canceled else ("timeout" if outcome.runner_status == "timeout" else "failed")
            message = f"ansible-runner ended with status {outcome.runner_status} and no result for {node.name}"
            if outcome.error:
                message = f"{message}: {outcome.error}"
            return models.CommandResult(node=node.name, command=command, ok=False, status=status,
                                        duration_ms=outcome.duration_ms, message=message, routing=routing_info)
        message = ""
        if canceled or result.status == "canceled":
            result.status = "canceled"
            message = f"canceled by the caller: stopped on {node.name} (its whole process group, as a timeout does)"
        elif result.status == "unreachable":
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

    def _nowhere(self, command: str, verdict: Verdict, info: models.Routing) -> models.CommandResult:
        self._audit("command", command=command, decision=verdict.audit_decision, answer=verdict.answer,
                    status="unreachable", reason=info.reason)
        return models.CommandResult(command=command, ok=False, status="unreachable", message=info.reason,
                                    routing=info)

    # --- commands -----------------------------------------------------------------------

    def run(self, command: str, requires_os: str | None = None, requires_arch: str | None = None,
            requires_tags: Sequence[str] = (), timeout_s: int = settings.COMMAND_TIMEOUT_S,
            call: Call | None = None) -> models.CommandResult:
        """Route to the best capable node and run; one retry elsewhere if the node is unreachable."""
        call = call or Call()
        timeout_s = self.check_timeout(timeout_s)
        verdict = self.judge(command, call.approval)
        if not verdict.run:
            return self._refuse(verdict)
        requirements = routing.Requirements(os=requires_os, arch=requires_arch, tags=tuple(requires_tags))
        tried: list[str] = []
        while True:
            decision = routing.choose_for_command(command, requirements, self.views(), self.busy(),
                                                  self.light_commands.current())
            info = _routing_model(decision)
            if tried:
                info.reason = f"{info.reason} (after {', '.join(tried)} turned out unreachable)"
            if decision.node is None:
                return self._nowhere(command, verdict, info)
            result = self._execute(self.directory.get(decision.node), command, timeout_s, info, verdict, call)
            if result.status != "unreachable" or len(tried) >= 1 or call.canceled:
                return result
            tried.append(decision.node)

    def offload(self, command: str, node_name: str, timeout_s: int = settings.COMMAND_TIMEOUT_S,
                call: Call | None = None) -> models.CommandResult:
        """Run on a named node (it must exist; an unreachable one reports so)."""
        call = call or Call()
        timeout_s = self.check_timeout(timeout_s)
        node = self.directory.get(node_name)
        verdict = self.judge(command, call.approval)
        if not verdict.run:
            return self._refuse(verdict, node.name)
        info = models.Routing(chosen=node.name, reason=f"named by the caller ({node.health})")
        if not node.active:
            info.reason = f"{node.name} is inactive in the registry: activate it first"
            return self._nowhere(command, verdict, info).model_copy(update={"node": node.name})
        return self._execute(node, command, timeout_s, info, verdict, call)

    def parallel(self, commands: Sequence[str], requires_os: str | None = None, requires_arch: str | None = None,
                 requires_tags: Sequence[str] = (), timeout_s: int = settings.COMMAND_TIMEOUT_S,
                 call: Call | None = None) -> models.ParallelResult:
        """Run all commands at once, placed by load; a refused command fails alone."""
        call = call or Call()
        timeout_s = self.check_timeout(timeout_s)
        if not commands:
            raise BridgeError("commands is empty: pass at least one command")
        started = time.monotonic()
        results: list[models.CommandResult | None] = [None] * len(commands)
        runnable: list[tuple[int, Verdict]] = []
        for index, command in enumerate(commands):
            verdict = self.judge(command, call.approval)
            if verdict.run:
                runnable.append((index, verdict))
            else:
                results[index] = self._refuse(verdict)
        requirements = routing.Requirements(os=requires_os, arch=requires_arch, tags=tuple(requires_tags))
        placements = routing.place_many(requirements, len(runnable), self.views(), self.busy())
        placed: list[tuple[int, Node, models.Routing, Verdict]] = []
        for (index, verdict), decision in zip(runnable, placements, strict=True):
            info = _routing_model(decision)
            if decision.node is None:
                results[index] = self._nowhere(commands[index], verdict, info)
            else:
                placed.append((index, self.directory.get(decision.node), info, verdict))
        if placed:
            # One Ansible run for the whole batch: each command on its node, all at once.
            aliases = {f"{entry[1].name}__cmd{entry[0]}": entry for entry in placed}
            runs = {alias: NodeRun(node.name, execution.new_run_id()) for alias, (_, node, _, _) in aliases.items()}
            intents = {alias: self._intent("command", command=commands[index], nodes=[node.name],
                                           decision=verdict.audit_decision, answer=verdict.answer)
                       for alias, (index, node, _, verdict) in aliases.items()}
            done = iter(range(1, len(aliases) + 1))
            with (self._runs, self.in_flight.hold(*(node.name for _, node, _, _ in placed)),
                  self._tracking(call, list(runs.values()))):
                outcome = execution.run_shell_batch(
                    [(alias, node.connection_vars, commands[index], runs[alias].run_id)
                     for alias, (index, node, _, _) in aliases.items()],
                    timeout_s=timeout_s, output_cap=self.config.settings.output_cap,
                    on_host=lambda alias, r: call.report(next(done), len(aliases), f"{alias}: {r.status}"),
                    give_up=lambda: call.canceled_for(settings.CANCEL_GRACE_S),
                )
            for alias, (index, node, info, verdict) in aliases.items():
                result = self._result(node, commands[index], timeout_s, outcome, info, outcome.hosts.get(alias), call)
                results[index] = self._finish(intents[alias], result, verdict)
        finished = [r for r in results if r is not None]
        return models.ParallelResult(
            results=finished, duration_ms=int((time.monotonic() - started) * 1000),
            succeeded=sum(r.ok for r in finished), failed=sum(not r.ok for r in finished),
        )

    def broadcast(self, command: str, pattern: str, timeout_s: int = settings.COMMAND_TIMEOUT_S,
                  call: Call | None = None) -> models.BroadcastResult:
        """Run on every node matching an Ansible host pattern, in one Ansible run."""
        call = call or Call()
        timeout_s = self.check_timeout(timeout_s)
        names = self.directory.match(pattern)
        started = time.monotonic()
        verdict = self.judge(command, call.approval)
        if not verdict.run:
            self._refuse(verdict, action="broadcast")
            results = [verdict.refused(name) for name in names]
        else:
            nodes = [self.directory.get(name) for name in names]
            run_id = execution.new_run_id()  # the same name on every node: one kill stops them all
            intent = self._intent("broadcast", command=command, nodes=names, pattern=pattern,
                                  decision=verdict.audit_decision, answer=verdict.answer)
            done = iter(range(1, len(nodes) + 1))
            with (self._runs, self.in_flight.hold(*names),
                  self._tracking(call, [NodeRun(name, run_id) for name in names])):
                outcome = execution.run_shell(
                    nodes={node.name: node.connection_vars for node in nodes}, command=command,
                    timeout_s=timeout_s, output_cap=self.config.settings.output_cap, run_id=run_id,
                    on_host=lambda host, r: call.report(next(done), len(nodes), f"{host}: {r.status}"),
                    give_up=lambda: call.canceled_for(settings.CANCEL_GRACE_S),
                )
            results = [self._result(node, command, timeout_s, outcome, None, outcome.hosts.get(node.name), call)
                       for node in nodes]
            for result in results:
                if verdict.message:
                    result.message = f"{result.message} ({verdict.message})" if result.message else verdict.message
            self._outcome(intent, "broadcast", nodes=names, rc=max((r.rc or 0) for r in results) if results else None,
                          statuses=dict(Counter(r.status for r in results)))
        return models.BroadcastResult(
            pattern=pattern, command=command, results=results, matched=names,
            succeeded=sum(r.ok for r in results), failed=sum(not r.ok for r in results),
            duration_ms=int((time.monotonic() - started) * 1000),
        )

__all__ = ["Approval", "BridgeConfig", "BridgeError", "Call", "Cluster", "NodeError"]
