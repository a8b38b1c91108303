"""Tracked jobs that outlive the call and the bridge: submit, poll, read, cancel, monitor.

Ansible's own async (`async`/`poll: 0` + `async_status`) was the first candidate and does
not fit: async_wrapper keeps the module's whole output in memory and hands it back only
at the end (no live output for progress, a 100 MB log becomes a 100 MB JSON result), it
writes no per-job folder or log the role's job and log folders are for, and it exposes no
process group to cancel. So each job is started, polled, read and cancelled by small
POSIX-sh snippets (scripts.py) run through ansible-runner, and the job itself runs detached
on the node in a session of its own:

    <job dir>/<id>/command, pid, started_at, ended_at, rc, timed_out, canceled
    <log dir>/<id>.log (stdout) and <id>.err.log (stderr)

The folders are the node's own (host vars jexida_worker_job_dir / _log_dir, else the role's
defaults). A monitor thread re-attaches to running jobs after a restart.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from mcp_bridge import execution, routing, settings
from mcp_bridge.call import Call
from mcp_bridge.jobs import scripts
from mcp_bridge.jobs.models import (
    _EPOCH,
    FINISHED,
    CancelResult,
    JobError,
    JobInfo,
    JobOutput,
    JobResult,
    _when,
    new_job_id,
    now_utc,
)
from mcp_bridge.jobs.store import JobStore, row_to_info
from mcp_bridge.nodes import Node


class JobManager:
    """Submit, track, read and cancel jobs; shared by the MCP tools and the CLI."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        tuning = cluster.config.settings
        self.store = JobStore(cluster.config.home / "jobs.db")
        self.poll_interval_s = tuning.job_poll_interval_s
        self._placing = threading.Lock()
        self._pending: Counter[str] = Counter()
        self._stop = threading.Event()
        self._monitor: threading.Thread | None = None
        self._unreachable_since: dict[str, float] = {}
        self.lost_after_s = tuning.job_lost_after_s
        self.store.purge(tuning.job_retention_days)
        # Told of every change a client could see (status, output sizes): the MCP server turns it into
        # resource-updated notifications, the web pages into live output.
        self.listeners: list[Callable[[str], None]] = []
        self._seen: dict[str, tuple[Any, ...]] = {}

    def _update(self, job_id: str, **fields: Any) -> None:
        self.store.update(job_id, **fields)
        self._changed(job_id)

    def _changed(self, job_id: str) -> None:
        row = self.store.get(job_id)
        signature = (row["status"], row["stdout_bytes"], row["stderr_bytes"], row["last_line"])
        if self._seen.get(job_id) == signature:
            return
        if row["status"] in FINISHED:
            self._seen.pop(job_id, None)
        else:
            self._seen[job_id] = signature
        for listener in list(self.listeners):
            try:
                listener(job_id)
            except Exception as exc:  # a listener must never break job tracking
                print(f"jexida: job listener failed: {exc}", file=sys.stderr, flush=True)

    # --- placement ------------------------------------------------------------------------

    def jobs_in_flight(self) -> dict[str, int]:
        """Jobs the node's probe may not count yet: being started, or started after the last probe."""
        snapshot = self.cluster.directory.snapshot()
        probed = {name: _when(node.facts.get("probed_at")) for name, node in snapshot.nodes.items()}
        counts: Counter[str] = Counter(self._pending)
        for row in self.store.select("status = 'running'"):
            node = row["node"]
            if node and _when(row["started_at"] or row["created_at"]) >= probed.get(node, _EPOCH):
                counts[node] += 1
        return dict(counts)

    def _place(self, node_name: str | None, requirements: routing.Requirements) -> tuple[Node, str]:
        if node_name:
            node = self.cluster.directory.get(node_name)
            if not node.active:
                raise JobError(f"{node.name} is inactive in the registry: activate it or pick another node")
            return node, "named by the caller"
        decision = routing.choose_node(requirements, self.cluster.views(), self.cluster.busy())
        if decision.node is None:
            raise JobError(decision.reason)
        return self.cluster.directory.get(decision.node), decision.reason

    def _shell(self, node: Node, script: str) -> execution.RunOutcome:
        """Run a node-side snippet through ansible-runner (start, poll, read, cancel all go this way)."""
        return execution.run_snippet(node.name, node.connection_vars, script)

    # --- submit ---------------------------------------------------------------------------

    def submit(self, command: str, node_name: str | None = None, requires_os: str | None = None,
               requires_arch: str | None = None, requires_tags: tuple[str, ...] | list[str] = (),
               description: str = "", timeout_s: int = settings.JOB_TIMEOUT_S,
               wait_s: float = settings.JOB_WAIT_S,
               on_progress: Callable[[JobInfo], None] | None = None, call: Call | None = None) -> JobResult:
        """Start a tracked job; a job the policy refuses (or a person declines) is recorded as such.

        Canceling the call stops the wait, not the job: it is tracked and goes on (cancel_job stops it)."""
        call = call or Call()
        timeout_s = self.cluster.check_timeout(timeout_s)
        if not 0 <= wait_s <= settings.MAX_JOB_WAIT_S:
            raise JobError(f"wait_s must be between 0 and {settings.MAX_JOB_WAIT_S:g} seconds, got {wait_s}")
        job_id = new_job_id()
        verdict = self.cluster.judge(command, call.approval)
        if not verdict.run:
            self.cluster._audit("submit", command=command, nodes=[node_name] if node_name else None, job_id=job_id,
                                decision=verdict.audit_decision, answer=verdict.answer, status=verdict.status)
            now = now_utc()
            self.store.insert(job_id=job_id, node=node_name, command=command, description=description,
                              status=verdict.status, created_at=now, ended_at=now, timeout_s=timeout_s,
                              error=verdict.message)
            self._changed(job_id)
            return self.result(job_id)
        requirements = routing.Requirements(os=requires_os, arch=requires_arch, tags=tuple(requires_tags))
        with self._placing:  # choose and reserve together, so concurrent submits spread out
            node, reason = self._place(node_name, requirements)
            self._pending[node.name] += 1
        try:
            intent = self.cluster._intent("submit", command=command, nodes=[node.name], job_id=job_id,
                                          decision=verdict.audit_decision, answer=verdict.answer)
            self.store.insert(job_id=job_id, node=node.name, command=command, description=description,
                              status="queued", created_at=now_utc(), timeout_s=timeout_s, routing_reason=reason,
                              error=verdict.message or None)
            outcome = self._shell(node, scripts.start(node.job_dir, node.log_dir, job_id, command, timeout_s))
            started = outcome.hosts.get(node.name)
            if started is None or not started.ok or not started.stdout.strip().isdigit():
                why = (started.msg or started.stderr) if started else outcome.runner_status
                self._update(job_id, status="lost", error=f"could not start on {node.name}: {why.strip()}",
                                  ended_at=now_utc())
                self.cluster._outcome(intent, "submit", nodes=[node.name], job_id=job_id, status="lost")
                return self.result(job_id)
            self._update(job_id, status="running", pid=int(started.stdout.strip()), started_at=now_utc())
        finally:
            with self._placing:
                self._pending[node.name] -= 1
                if self._pending[node.name] <= 0:
                    del self._pending[node.name]
        self.cluster._outcome(intent, "submit", nodes=[node.name], job_id=job_id, status="running")
        if wait_s <= 0:  # the start just said it runs (with its pid): a poll now would only say it again
            return self.result(job_id)
        return self.wait(job_id, wait_s, on_progress, call)

    def wait(self, job_id: str, wait_s: float, on_progress: Callable[[JobInfo], None] | None = None,
             call: Call | None = None) -> JobResult:
        """Poll until the job ends or wait_s passes (or the call is canceled): the full result if it
        ended, else its state (no output yet)."""
        deadline = time.monotonic() + wait_s
        while True:
            info = self.refresh([job_id])[0] if self.store.get(job_id)["status"] == "running" else self.get(job_id)
            if info.status in FINISHED:
                return self.result(job_id)
            if on_progress:
                on_progress(info)
            if time.monotonic() >= deadline or (call is not None and call.canceled):
                return JobResult(**info.model_dump())
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))

    # --- state ----------------------------------------------------------------------------

    def refresh(self, job_ids: list[str]) -> list[JobInfo]:
        """Poll the nodes of these running jobs (one Ansible run per node) and record what changed."""
        rows = [self.store.get(job_id) for job_id in job_ids]
        by_node: dict[str, list[sqlite3.Row]] = {}
        for row in rows:
            if row["status"] == "running" and row["node"]:
                by_node.setdefault(row["node"], []).append(row)
        for node_name, node_rows in by_node.items():
            self._poll_node(node_name, node_rows)
        return [row_to_info(self.store.get(job_id)) for job_id in job_ids]

    def _poll_node(self, node_name: str, rows: list[sqlite3.Row]) -> None:
        try:
            node = self.cluster.directory.get(node_name)
        except LookupError:
            for row in rows:
                self._lose(row, f"node {node_name} is no longer in the inventory")
            return
        ids = [row["job_id"] for row in rows]
        outcome = self._shell(node, scripts.poll(node.job_dir, node.log_dir, ids))
        result = outcome.hosts.get(node.name)
        if result is None or result.status == "unreachable" or not result.ok:
            # A blip is not a loss: the job may still be running there. Only a node that stays
            # unreachable for lost_after_s loses its jobs.
            why = (result.msg or result.stderr).strip() if result else outcome.runner_status
            since = self._unreachable_since.setdefault(node_name, time.monotonic())
            if time.monotonic() - since >= self.lost_after_s:
                for row in rows:
                    self._lose(row, f"node {node_name} unreachable for {self.lost_after_s:.0f}s: {why}")
            return
        self._unreachable_since.pop(node_name, None)
        states = {}
        for line in result.stdout.splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            states[entry["id"]] = entry
        for row in rows:
            state = states.get(row["job_id"], {"state": "missing"})
            self._apply(node, row, state)

    def _lose(self, row: sqlite3.Row, reason: str) -> None:
        if row["status"] == "running":  # a job that already ended keeps its real result
            self._update(row["job_id"], status="lost", error=reason, ended_at=now_utc())
            self.cluster._audit("job-lost", job_id=row["job_id"], nodes=[row["node"]], reason=reason)

    def _apply(self, node: Node, row: sqlite3.Row, state: dict[str, Any]) -> None:
        job_id = row["job_id"]
        kind = state.get("state")
        sizes = {"stdout_bytes": int(state.get("stdout_bytes") or 0),
                 "stderr_bytes": int(state.get("stderr_bytes") or 0)}
        if kind == "running":
            self._update(job_id, status="running", last_line=state.get("last_line") or "", **sizes)
        elif kind == "exited":
            rc = int(state["rc"])
            status = "timeout" if state.get("timed_out") else ("succeeded" if rc == 0 else "failed")
            self._collect(node, job_id, status=status, rc=rc, ended_at=state.get("ended_at") or now_utc(), **sizes)
        elif kind == "canceled":
            self._collect(node, job_id, status="canceled", rc=None, ended_at=state.get("ended_at") or now_utc(),
                          **sizes)
        elif kind == "vanished":
            self._lose(row, f"the job's process on {node.name} is gone and left no exit code "
                            f"(node rebooted or process killed outside jexida)")
        else:
            self._lose(row, f"the job's folder {node.job_dir}/{job_id} is missing on {node.name}")

    def _collect(self, node: Node, job_id: str, **fields: Any) -> None:
        """Store the capped output (head + tail) with the final state; the full log stays on the node.

        The monitor and a caller's get_job/wait may see the end at the same time: one collects."""
        if not self.store.claim_collection(job_id):
            return
        cap = min(self.cluster.config.settings.output_cap, execution.MAX_EVENT_RES // 6)
        outcome = self._shell(node, scripts.collect(node.job_dir, node.log_dir, job_id, cap))
        result = outcome.hosts.get(node.name)
        stdout = stderr = ""
        if result and result.ok:
            parts = result.stdout.split(f"\n{scripts.STREAM_END}")
            # Each stream ends with the newline the marker line starts with; drop it, as Ansible does.
            stdout = parts[0].removesuffix("\n") if parts else ""
            stderr = parts[1].removeprefix("\n").removesuffix("\n") if len(parts) > 1 else ""
        truncated = "[... jexida: " in stdout or "[... jexida: " in stderr
        self._update(job_id, stdout=stdout, stderr=stderr, truncated=int(truncated), **fields)
        self.cluster._audit("job-finished", job_id=job_id, nodes=[node.name], rc=fields.get("rc"),
                            status=fields.get("status"))

    def get(self, job_id: str) -> JobInfo:
        row = self.store.get(job_id)
        if row["status"] == "running":
            return self.refresh([job_id])[0]
        return row_to_info(row)

    def result(self, job_id: str) -> JobResult:
        return row_to_info(self.store.get(job_id), JobResult)  # type: ignore[return-value]

    def list(self, node_name: str | None = None, status: str | None = None,
             limit: int = settings.JOB_LIST_LIMIT) -> list[JobInfo]:
        if status is not None and status not in (*FINISHED, "running", "queued"):
            raise JobError(f"unknown status {status!r}: use one of queued, running, {', '.join(FINISHED)}")
        clauses, params = [], []
        if node_name:
            clauses.append("node = ?")
            params.append(node_name)
        if status:
            clauses.append("status = ?")
            params.append(status)
        limit = max(1, min(limit, settings.MAX_JOB_LIST_LIMIT))
        rows = self.store.select(" AND ".join(clauses) or "1", tuple(params), limit)
        return [row_to_info(row) for row in rows]

    def output(self, job_id: str, stream: str = "stdout", offset: int = 0,
               limit: int = settings.OUTPUT_PAGE_BYTES, tail: int | None = None) -> JobOutput:
        """Page through the job's whole log on the node (or its last N lines).

        The collected copy answers when the node is gone."""
        if stream not in ("stdout", "stderr"):
            raise JobError(f"stream must be stdout or stderr, got {stream!r}")
        if offset < 0 or limit < 1:
            raise JobError("offset must be >= 0 and limit >= 1")
        limit = min(limit, settings.MAX_OUTPUT_PAGE_BYTES)
        row = self.store.get(job_id)
        if tail is not None and tail < 1:
            raise JobError("tail must be >= 1 (lines)")
        try:
            node = self.cluster.directory.get(row["node"])
            script = scripts.read(node.job_dir, node.log_dir, job_id, stream, offset, limit, tail)
            result = self._shell(node, script).hosts.get(node.name)
        except LookupError:
            result = None
        if result is not None and result.ok:
            total_text, _, encoded = result.stdout.partition("\n")
            total = int(total_text.strip() or 0)
            raw = base64.b64decode(encoded.strip() or b"")
            if tail is None:
                start, end = offset, offset + len(raw)
                next_offset = end if end < total else None
            else:
                start, next_offset = max(0, total - len(raw)), None
            return JobOutput(job_id=job_id, stream=stream, offset=start, data=raw.decode(errors="replace"),
                             bytes_returned=len(raw), total_bytes=total, next_offset=next_offset, source="node")
        collected = row["stdout"] if stream == "stdout" else row["stderr"]
        if tail is not None:
            data = "\n".join(collected.splitlines()[-tail:])
        else:
            data = collected.encode()[offset:offset + limit].decode(errors="replace")
        return JobOutput(job_id=job_id, stream=stream, offset=offset, data=data, bytes_returned=len(data.encode()),
                         total_bytes=len(collected.encode()), next_offset=None, source="collected")

    def cancel(self, job_id: str) -> CancelResult:
        row = self.store.get(job_id)
        if row["status"] in FINISHED:
            return CancelResult(job_id=job_id, status=row["status"], canceled=False,
                                message=f"job already {row['status']}: nothing to cancel")
        node = self.cluster.directory.get(row["node"])
        outcome = self._shell(node, scripts.cancel(node.job_dir, node.log_dir, job_id))
        result = outcome.hosts.get(node.name)
        if result is None or not result.ok:
            why = (result.msg or result.stderr).strip() if result else outcome.runner_status
            return CancelResult(job_id=job_id, status=row["status"], canceled=False,
                                message=f"could not reach {node.name} to cancel: {why}; try again")
        words = result.stdout.split()
        self.refresh([job_id])
        status = self.store.get(job_id)["status"]
        self.cluster._audit("cancel", job_id=job_id, nodes=[node.name], status=status)
        if words and words[0] == "canceled":
            killed, left = words[1], words[2]
            return CancelResult(job_id=job_id, status=status, canceled=True,
                                message=f"stopped {killed} process(es) of the job on {node.name}; {left} left")
        return CancelResult(job_id=job_id, status=status, canceled=False,
                            message=f"job already {status} on {node.name}: nothing to cancel")

    # --- monitor --------------------------------------------------------------------------

    def start_monitor(self) -> None:
        """Re-attach to running jobs (after a restart too) and collect them when they end."""
        if self._monitor is None:
            self._monitor = threading.Thread(target=self._watch, name="jexida-jobs", daemon=True)
            self._monitor.start()

    def stop_monitor(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_interval_s):
            try:
                running = [row["job_id"] for row in self.store.select("status = 'running'")]
                if running:
                    self.refresh(running)
            except Exception as exc:  # the monitor must outlive one bad poll
                print(f"jexida: job monitor: {exc}", flush=True, file=sys.stderr)
