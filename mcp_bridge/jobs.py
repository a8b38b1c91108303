"""Tracked jobs that outlive the call and the bridge.

Ansible's own async (`async`/`poll: 0` + `async_status`) was the first candidate and does
not fit: async_wrapper keeps the module's whole output in memory and hands it back only
at the end (no live output for progress, a 100 MB log becomes a 100 MB JSON result), it
writes no per-job folder or log the role's /opt/jexida-jobs and /var/log/jexida-jobs are
for, and it exposes no process group to cancel. So each job is started, polled, read and
cancelled by small POSIX-sh snippets run through ansible-runner (ansible.builtin.shell),
and the job itself runs detached on the node in a session of its own:

    /opt/jexida-jobs/<id>/command, pid, started_at, ended_at, rc, timed_out, canceled
    /var/log/jexida-jobs/<id>.log (stdout) and <id>.err.log (stderr)

On the controller an SQLite database (WAL) under JEXIDA_HOME holds the records and the
collected (capped) output. A monitor thread re-attaches to running jobs after a restart.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import sqlite3
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from mcp_bridge import execution, routing
from mcp_bridge.nodes import Node, runner_inventory

JOB_DIR = "/opt/jexida-jobs"
LOG_DIR = "/var/log/jexida-jobs"
JOB_ID = re.compile(r"^j-\d{8}-\d{6}-[0-9a-f]{6}$")
MAX_PAGE = 1024 * 1024
JobStatus = Literal["queued", "running", "succeeded", "failed", "timeout", "canceled", "lost"]
FINISHED = ("succeeded", "failed", "timeout", "canceled", "lost")

# Starts the job detached (setsid: its own session, so cancel can reach the whole tree)
# and prints its pid. `mkdir` without -p refuses a second start of the same id.
_START = r"""set -e
J=@JOB_DIR@/@ID@; O=@LOG_DIR@/@ID@.log; E=@LOG_DIR@/@ID@.err.log
mkdir "$J"
printf %s '@B64@' | base64 -d > "$J/command" 2>/dev/null || printf %s '@B64@' | base64 -D > "$J/command"
cat > "$J/run.sh" <<'JEXIDA_RUN'
J=$1; O=$2; E=$3; T=$4
echo $$ > "$J/pid.tmp" && mv "$J/pid.tmp" "$J/pid"
date -u +%Y-%m-%dT%H:%M:%SZ > "$J/started_at"
run=sh; command -v bash >/dev/null 2>&1 && run=bash
start=$(date +%s)
if [ "$T" -gt 0 ] && command -v timeout >/dev/null 2>&1; then
  timeout -k 10 "$T" "$run" "$J/command" >"$O" 2>"$E" </dev/null
else
  "$run" "$J/command" >"$O" 2>"$E" </dev/null
fi
rc=$?
if [ "$T" -gt 0 ] && [ $(( $(date +%s) - start )) -ge "$T" ] && { [ $rc -eq 124 ] || [ $rc -eq 137 ]; }; then
  : > "$J/timed_out"
fi
date -u +%Y-%m-%dT%H:%M:%SZ > "$J/ended_at"
echo $rc > "$J/rc.tmp" && mv "$J/rc.tmp" "$J/rc"
JEXIDA_RUN
: > "$O"; : > "$E"
if command -v setsid >/dev/null 2>&1; then
  setsid sh "$J/run.sh" "$J" "$O" "$E" @T@ >/dev/null 2>&1 </dev/null &
else
  nohup sh "$J/run.sh" "$J" "$O" "$E" @T@ >/dev/null 2>&1 </dev/null &
fi
i=0; while [ ! -s "$J/pid" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
cat "$J/pid"
"""

# One JSON line per job: its state on the node, output sizes and last line (for progress).
_POLL = r"""for id in @IDS@; do
  J=@JOB_DIR@/$id; O=@LOG_DIR@/$id.log; E=@LOG_DIR@/$id.err.log
  if [ ! -d "$J" ]; then printf '{"id":"%s","state":"missing"}\n' "$id"; continue; fi
  pid=$(cat "$J/pid" 2>/dev/null || echo 0); rc=$(cat "$J/rc" 2>/dev/null || echo null)
  state=exited
  if [ "$rc" = null ]; then
    if [ -f "$J/canceled" ]; then state=canceled
    elif [ "$pid" -gt 0 ] && kill -0 "$pid" 2>/dev/null; then state=running
    else state=vanished; fi
  fi
  to=false; [ -f "$J/timed_out" ] && to=true
  ob=$(wc -c <"$O" 2>/dev/null | tr -d ' '); eb=$(wc -c <"$E" 2>/dev/null | tr -d ' ')
  last=$(tail -c 4096 "$O" 2>/dev/null | tail -n 1 | tr -d '\000-\037"\\' | cut -c1-200)
  printf '{"id":"%s","state":"%s","rc":%s,"pid":%s,"timed_out":%s,"stdout_bytes":%s,"stderr_bytes":%s,' \
    "$id" "$state" "$rc" "$pid" "$to" "${ob:-0}" "${eb:-0}"
  printf '"started_at":"%s","ended_at":"%s","last_line":"%s"}\n' \
    "$(cat "$J/started_at" 2>/dev/null)" "$(cat "$J/ended_at" 2>/dev/null)" "$last"
done
"""

# Stops the job's whole session (TERM, then KILL), marks it canceled, says what it killed.
_CANCEL = r"""J=@JOB_DIR@/@ID@
[ -d "$J" ] || { echo missing; exit 0; }
[ -f "$J/rc" ] && { echo finished; exit 0; }
pid=$(cat "$J/pid" 2>/dev/null || echo 0)
: > "$J/canceled"
n=$(pgrep -s "$pid" 2>/dev/null | wc -l | tr -d ' ')
pkill -TERM -s "$pid" 2>/dev/null || kill -TERM -- "-$pid" 2>/dev/null || true
i=0; while pgrep -s "$pid" >/dev/null 2>&1 && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
pkill -KILL -s "$pid" 2>/dev/null || true
date -u +%Y-%m-%dT%H:%M:%SZ > "$J/ended_at"
left=$(pgrep -s "$pid" 2>/dev/null | wc -l | tr -d ' ')
echo "canceled $n $left"
"""


def _fill(template: str, **values: object) -> str:
    text = template.replace("@JOB_DIR@", JOB_DIR).replace("@LOG_DIR@", LOG_DIR)
    for key, value in values.items():
        text = text.replace(f"@{key}@", str(value))
    return text


def new_job_id() -> str:
    return f"j-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"


def check_job_id(job_id: str) -> str:
    if not JOB_ID.match(job_id or ""):
        raise JobError(f"bad job id {job_id!r}: job ids look like j-20261121-060000-a1b2c3 (see list_jobs)")
    return job_id


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _when(stamp: str | None) -> datetime:
    """An ISO 8601 time (ours or the probe's) as an aware datetime; the epoch when unknown."""
    if not stamp:
        return _EPOCH
    try:
        parsed = datetime.fromisoformat(stamp)
    except ValueError:
        return _EPOCH
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class JobError(ValueError):
    """Bad input about a job: unknown id, bad stream, ...; the message says what to do."""


class JobInfo(BaseModel):
    job_id: str
    status: JobStatus
    node: str | None
    command: str
    description: str = ""
    rc: int | None = None
    created_at: str
    started_at: str | None = None
    ended_at: str | None = None
    timeout_s: int
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    last_lines: list[str] = Field(default_factory=list, description="the end of stdout (from the collected output)")
    error: str | None = Field(None, description="why a job is lost or failed to start")
    routing_reason: str | None = None


class JobResult(JobInfo):
    """A finished job with its collected output (capped: head and tail; the full log stays on the node)."""

    stdout: str = ""
    stderr: str = ""
    truncated: bool = False


class JobOutput(BaseModel):
    job_id: str
    stream: Literal["stdout", "stderr"]
    offset: int
    data: str
    bytes_returned: int
    total_bytes: int
    next_offset: int | None = Field(None, description="pass as offset to read on; null at the end")
    source: Literal["node", "collected"]


class CancelResult(BaseModel):
    job_id: str
    status: JobStatus
    canceled: bool
    message: str


_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY, node TEXT, command TEXT NOT NULL, description TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL, rc INTEGER, created_at TEXT NOT NULL, started_at TEXT, ended_at TEXT,
    timeout_s INTEGER NOT NULL, pid INTEGER, stdout_bytes INTEGER NOT NULL DEFAULT 0,
    stderr_bytes INTEGER NOT NULL DEFAULT 0, stdout TEXT NOT NULL DEFAULT '', stderr TEXT NOT NULL DEFAULT '',
    truncated INTEGER NOT NULL DEFAULT 0, error TEXT, routing_reason TEXT, last_line TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs(status);
CREATE INDEX IF NOT EXISTS jobs_by_node ON jobs(node);
"""


class JobStore:
    """The controller's job records: SQLite in WAL mode, one connection per thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self.db() as db:
            db.executescript(_SCHEMA)

    @contextmanager
    def db(self) -> Iterator[sqlite3.Connection]:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        yield conn

    def insert(self, **fields: Any) -> None:
        keys = ", ".join(fields)
        marks = ", ".join("?" for _ in fields)
        with self.db() as db:
            db.execute(f"INSERT INTO jobs ({keys}) VALUES ({marks})", tuple(fields.values()))

    def update(self, job_id: str, **fields: Any) -> None:
        sets = ", ".join(f"{key} = ?" for key in fields)
        with self.db() as db:
            db.execute(f"UPDATE jobs SET {sets} WHERE job_id = ?", (*fields.values(), job_id))

    def get(self, job_id: str) -> sqlite3.Row:
        with self.db() as db:
            row = db.execute("SELECT * FROM jobs WHERE job_id = ?", (check_job_id(job_id),)).fetchone()
        if row is None:
            raise JobError(f"unknown job {job_id!r}: list_jobs shows the known ones")
        return row

    def select(self, where: str = "1", params: tuple[Any, ...] = (), limit: int = 1000) -> list[sqlite3.Row]:
        with self.db() as db:
            return db.execute(f"SELECT * FROM jobs WHERE {where} ORDER BY created_at DESC, job_id DESC LIMIT ?",
                              (*params, limit)).fetchall()

    def purge(self, older_than_days: float) -> int:
        cutoff = (datetime.now(UTC) - timedelta(days=older_than_days)).strftime("%Y-%m-%dT%H:%M:%SZ")
        marks = ",".join("?" for _ in FINISHED)
        with self.db() as db:
            return db.execute(f"DELETE FROM jobs WHERE status IN ({marks}) AND created_at < ?",
                              (*FINISHED, cutoff)).rowcount


def _info(row: sqlite3.Row, model: type[JobInfo] = JobInfo) -> JobInfo:
    stdout = row["stdout"] or ""
    last = stdout.splitlines()[-5:] if stdout else ([row["last_line"]] if row["last_line"] else [])
    data: dict[str, Any] = dict(
        job_id=row["job_id"], status=row["status"], node=row["node"], command=row["command"],
        description=row["description"], rc=row["rc"], created_at=row["created_at"], started_at=row["started_at"],
        ended_at=row["ended_at"], timeout_s=row["timeout_s"], stdout_bytes=row["stdout_bytes"],
        stderr_bytes=row["stderr_bytes"], last_lines=last, error=row["error"], routing_reason=row["routing_reason"],
    )
    if model is JobResult:
        data.update(stdout=stdout, stderr=row["stderr"] or "", truncated=bool(row["truncated"]))
    return model(**data)


class JobManager:
    """Submit, track, read and cancel jobs; shared by the MCP tools and the CLI."""

    def __init__(self, cluster: Any, retention_days: float = 30, poll_interval_s: float = 2.0,
                 lost_after_s: float = 30.0) -> None:
        self.cluster = cluster
        self.store = JobStore(cluster.config.home / "jobs.db")
        self.poll_interval_s = poll_interval_s
        self._placing = threading.Lock()
        self._pending: Counter[str] = Counter()
        self._stop = threading.Event()
        self._monitor: threading.Thread | None = None
        self._unreachable_since: dict[str, float] = {}
        self.lost_after_s = lost_after_s
        self.store.purge(retention_days)

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
        return execution.run_module(inventory=runner_inventory([node]), host_pattern=node.name,
                                    module="ansible.builtin.shell", module_args=execution.encoded_script(script),
                                    timeout_s=120)

    # --- submit ---------------------------------------------------------------------------

    def submit(self, command: str, node_name: str | None = None, requires_os: str | None = None,
               requires_arch: str | None = None, requires_tags: tuple[str, ...] | list[str] = (),
               description: str = "", timeout_s: int = 3600, wait_s: float = 10,
               on_progress: Callable[[JobInfo], None] | None = None) -> JobResult:
        timeout_s = self.cluster.check_timeout(timeout_s)
        if not 0 <= wait_s <= 600:
            raise JobError(f"wait_s must be between 0 and 600 seconds, got {wait_s}")
        job_id = new_job_id()
        decision = self.cluster.check_command(command)
        if not decision.allowed:
            self.cluster._audit("submit", command=command, decision=f"rejected:{decision.rule}", job_id=job_id)
            raise JobError(f"rejected by policy rule {decision.rule}: {decision.reason}")
        requirements = routing.Requirements(os=requires_os, arch=requires_arch, tags=tuple(requires_tags))
        with self._placing:  # choose and reserve together, so concurrent submits spread out
            node, reason = self._place(node_name, requirements)
            self._pending[node.name] += 1
        try:
            self.store.insert(job_id=job_id, node=node.name, command=command, description=description,
                              status="queued", created_at=_now(), timeout_s=timeout_s, routing_reason=reason)
            script = _fill(_START, ID=job_id, B64=base64.b64encode(command.encode()).decode(), T=timeout_s)
            outcome = self._shell(node, script)
            started = outcome.hosts.get(node.name)
            if started is None or not started.ok or not started.stdout.strip().isdigit():
                why = (started.msg or started.stderr) if started else outcome.runner_status
                self.store.update(job_id, status="lost", error=f"could not start on {node.name}: {why.strip()}",
                                  ended_at=_now())
                self.cluster._audit("submit", command=command, nodes=[node.name], job_id=job_id,
                                    decision="allowed", status="lost")
                return self.result(job_id)
            self.store.update(job_id, status="running", pid=int(started.stdout.strip()), started_at=_now())
        finally:
            with self._placing:
                self._pending[node.name] -= 1
                if self._pending[node.name] <= 0:
                    del self._pending[node.name]
        self.cluster._audit("submit", command=command, nodes=[node.name], job_id=job_id, decision="allowed")
        return self.wait(job_id, wait_s, on_progress)

    def wait(self, job_id: str, wait_s: float, on_progress: Callable[[JobInfo], None] | None = None,
             ) -> JobResult:
        """Poll until the job ends or wait_s passes: the full result if it ended, else its state (no output yet)."""
        deadline = time.monotonic() + wait_s
        while True:
            info = self.refresh([job_id])[0] if self.store.get(job_id)["status"] == "running" else self.get(job_id)
            if info.status in FINISHED:
                return self.result(job_id)
            if on_progress:
                on_progress(info)
            if time.monotonic() >= deadline:
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
        return [_info(self.store.get(job_id)) for job_id in job_ids]

    def _poll_node(self, node_name: str, rows: list[sqlite3.Row]) -> None:
        try:
            node = self.cluster.directory.get(node_name)
        except LookupError:
            for row in rows:
                self._lose(row, f"node {node_name} is no longer in the inventory")
            return
        ids = " ".join(row["job_id"] for row in rows)
        outcome = self._shell(node, _fill(_POLL, IDS=ids))
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
            self.store.update(row["job_id"], status="lost", error=reason, ended_at=_now())
            self.cluster._audit("job-lost", job_id=row["job_id"], nodes=[row["node"]], reason=reason)

    def _apply(self, node: Node, row: sqlite3.Row, state: dict[str, Any]) -> None:
        job_id = row["job_id"]
        kind = state.get("state")
        sizes = {"stdout_bytes": int(state.get("stdout_bytes") or 0),
                 "stderr_bytes": int(state.get("stderr_bytes") or 0)}
        if kind == "running":
            self.store.update(job_id, status="running", error=None, last_line=state.get("last_line") or "", **sizes)
        elif kind == "exited":
            rc = int(state["rc"])
            status = "timeout" if state.get("timed_out") else ("succeeded" if rc == 0 else "failed")
            self._collect(node, job_id, status=status, rc=rc, ended_at=state.get("ended_at") or _now(), **sizes)
        elif kind == "canceled":
            self._collect(node, job_id, status="canceled", rc=None, ended_at=state.get("ended_at") or _now(), **sizes)
        elif kind == "vanished":
            self._lose(row, f"the job's process on {node.name} is gone and left no exit code "
                            f"(node rebooted or process killed outside jexida)")
        else:
            self._lose(row, f"the job's folder {JOB_DIR}/{job_id} is missing on {node.name}")

    def _collect(self, node: Node, job_id: str, **fields: Any) -> None:
        """Store the capped output (head + tail) with the final state; the full log stays on the node."""
        cap = min(self.cluster.config.output_cap, execution.MAX_EVENT_RES // 6)
        half = cap // 2
        script = (f"for f in {LOG_DIR}/{job_id}.log {LOG_DIR}/{job_id}.err.log; do n=$(wc -c <\"$f\"); "
                  f"if [ \"$n\" -le {cap} ]; then cat \"$f\"; else head -c {half} \"$f\"; "
                  f"printf '\\n[... jexida: %s bytes omitted ...]\\n' $((n - {cap})); tail -c {half} \"$f\"; fi; "
                  f"printf '\\n@@JEXIDA-STREAM-END@@\\n'; done")
        outcome = self._shell(node, script)
        result = outcome.hosts.get(node.name)
        stdout = stderr = ""
        if result and result.ok:
            parts = result.stdout.split("\n@@JEXIDA-STREAM-END@@")
            # Each stream ends with the newline the marker line starts with; drop it, as Ansible does.
            stdout = parts[0].removesuffix("\n") if parts else ""
            stderr = parts[1].removeprefix("\n").removesuffix("\n") if len(parts) > 1 else ""
        truncated = "[... jexida: " in stdout or "[... jexida: " in stderr
        self.store.update(job_id, stdout=stdout, stderr=stderr, truncated=int(truncated), **fields)
        self.cluster._audit("job-finished", job_id=job_id, nodes=[node.name], rc=fields.get("rc"),
                            status=fields.get("status"))

    def get(self, job_id: str) -> JobInfo:
        row = self.store.get(job_id)
        if row["status"] == "running":
            return self.refresh([job_id])[0]
        return _info(row)

    def result(self, job_id: str) -> JobResult:
        return _info(self.store.get(job_id), JobResult)  # type: ignore[return-value]

    def list(self, node_name: str | None = None, status: str | None = None, limit: int = 20) -> list[JobInfo]:
        if status is not None and status not in (*FINISHED, "running", "queued"):
            raise JobError(f"unknown status {status!r}: use one of queued, running, {', '.join(FINISHED)}")
        clauses, params = [], []
        if node_name:
            clauses.append("node = ?")
            params.append(node_name)
        if status:
            clauses.append("status = ?")
            params.append(status)
        rows = self.store.select(" AND ".join(clauses) or "1", tuple(params), max(1, min(limit, 1000)))
        return [_info(row) for row in rows]

    def output(self, job_id: str, stream: str = "stdout", offset: int = 0, limit: int = 65536,
               tail: int | None = None) -> JobOutput:
        """Page through the job's whole log on the node (or its last N lines).

        The collected copy answers when the node is gone."""
        if stream not in ("stdout", "stderr"):
            raise JobError(f"stream must be stdout or stderr, got {stream!r}")
        if offset < 0 or limit < 1:
            raise JobError("offset must be >= 0 and limit >= 1")
        limit = min(limit, MAX_PAGE)
        row = self.store.get(job_id)
        path = f"{LOG_DIR}/{job_id}{'.log' if stream == 'stdout' else '.err.log'}"
        if tail is not None:
            if tail < 1:
                raise JobError("tail must be >= 1 (lines)")
            read = f"tail -n {int(tail)} {path} | tail -c {limit}"
        else:
            read = f"tail -c +{int(offset) + 1} {path} | head -c {limit}"
        # base64 keeps the page byte-exact: Ansible strips trailing newlines from stdout.
        script = f"test -f {path} || exit 3; wc -c < {path}; {read} | base64 | tr -d '\\n'"
        try:
            node = self.cluster.directory.get(row["node"])
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
        outcome = self._shell(node, _fill(_CANCEL, ID=job_id))
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
