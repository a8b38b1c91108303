"""Typed results shared by every face (MCP tools, CLI): the SDK turns them into JSON schemas."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

CommandStatus = Literal["succeeded", "failed", "timeout", "unreachable", "rejected", "declined", "canceled"]


class Candidate(BaseModel):
    node: str
    score: float | None = Field(None, description="lower is better; null when excluded")
    excluded: str | None = Field(None, description="why the node could not take the command")


class Routing(BaseModel):
    chosen: str | None = Field(None, description="the node picked, or null when none qualified")
    reason: str
    candidates: list[Candidate] = Field(default_factory=list)


class CommandResult(BaseModel):
    node: str | None = Field(None, description="where the command ran")
    command: str
    rc: int | None = Field(None, description="exit code on the node; null if it never ran")
    ok: bool = Field(description="true when rc == 0")
    status: CommandStatus
    stdout: str = ""
    stderr: str = ""
    duration_ms: int = 0
    truncated: bool = Field(False, description="output was longer than the cap: head and tail kept")
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    message: str = Field("", description="what went wrong and what to do, when something did")
    rule: str | None = Field(None, description="the policy rule that rejected the command")
    routing: Routing | None = None


class ParallelResult(BaseModel):
    results: list[CommandResult]
    duration_ms: int
    succeeded: int
    failed: int


class BroadcastResult(BaseModel):
    pattern: str
    command: str
    results: list[CommandResult]
    matched: list[str]
    succeeded: int
    failed: int
    duration_ms: int


class NodeFacts(BaseModel):
    """Live facts from the jexida inventory's probe (null where not measured)."""

    reachable: bool | None = None
    error: str | None = None
    address: str | None = None
    probed_at: str | None = None
    probe_ms: int | None = None
    os: str | None = None
    arch: str | None = None
    distribution: str | None = None
    distribution_version: str | None = None
    python_version: str | None = None
    cpus: int | None = None
    load_1: float | None = None
    load_5: float | None = None
    load_15: float | None = None
    load_per_cpu: float | None = None
    mem_total_mb: int | None = None
    mem_available_mb: int | None = None
    mem_used_pct: float | None = None
    cpu_busy_pct: float | None = None
    disk_free_mb: int | None = None
    running_jobs: int | None = None
    capabilities: list[str] = Field(default_factory=list)
    load_group: str | None = None


class NodeInfo(BaseModel):
    name: str
    host: str
    port: int
    user: str
    tags: list[str]
    active: bool
    health: Literal["available", "overloaded", "unreachable", "inactive", "unprobed"]
    groups: list[str]
    jobs_in_flight: int = Field(0, description="commands this bridge is running there now")
    via: str | None = Field(None, description="the bastion node this node is reached through, if any")
    execution_node: str | None = Field(None, description="the node that runs this node's commands "
                                                         "(ansible-runner worker), if any")
    facts: NodeFacts


class ClusterStatus(BaseModel):
    nodes: list[NodeInfo]
    total: int
    available: int
    unreachable: int
    inactive: int
    overloaded: int
    by_load_group: dict[str, int]
    jobs_in_flight: int
    facts_age_s: float


class NodeCheck(BaseModel):
    name: str
    reachable: bool
    latency_ms: int | None = Field(None, description="one SSH round trip (the probe)")
    error: str | None = None
    address: str | None = None
    python_version: str | None = None
    disk_free_mb: int | None = None
    mem_total_mb: int | None = None
    mem_available_mb: int | None = None
    job_dirs_writable: bool | None = Field(None, description="checked through Ansible as the node's user")
    detail: str = ""


class RegisterResult(BaseModel):
    name: str
    changed: bool
    created: bool
    registry: str
    node: dict[str, Any]


class TaskSummary(BaseModel):
    task: str
    status: Literal["ok", "changed", "failed", "skipped", "unreachable"]
    message: str = ""


class ProvisionResult(BaseModel):
    name: str
    dry_run: bool
    ok: bool
    status: str
    tasks: list[TaskSummary]
    recap: dict[str, int]
    message: str
