"""The MCP tools that run commands: cluster_bash, offload_to, parallel_execute, cluster_broadcast, submit_job."""
# No `from __future__ import annotations`: the SDK evaluates tool signatures, whose resolvers are local.


import functools
from typing import Annotated

from mcp.server.mcpserver import Context, ElicitationResult, MCPServer, Resolve
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import Field

from mcp_bridge import models, settings
from mcp_bridge.call import Call
from mcp_bridge.core import Cluster
from mcp_bridge.jobs import JobInfo, JobResult
from mcp_bridge.server.calls import in_request, progress_to, run_core
from mcp_bridge.server.confirm import Confirm, approval_from, ask

# Hints for clients (not a security boundary): these tools run commands on real machines.
RUNS_COMMANDS = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False,
                                open_world_hint=True)

Command = Annotated[str, Field(description="The shell command to run (bash on the node, sh where bash is missing)",
                               min_length=1)]
TimeoutS = Annotated[int, Field(description="Seconds before the command is stopped on the node (its whole "
                                            "process group)", ge=1, le=settings.MAX_TIMEOUT_S)]
RequiresOs = Annotated[str | None, Field(description="Only nodes running this OS: linux or darwin (macos)")]
RequiresArch = Annotated[str | None, Field(description="Only nodes of this architecture: x86_64 or aarch64 (arm64)")]
RequiresTags = Annotated[list[str] | None, Field(description="Only nodes carrying all these tags (or capabilities: "
                                                             "gpu, docker, podman)")]
Approval = Annotated[ElicitationResult[Confirm], Field(description="filled in by the server")]


def register(server: MCPServer, cluster: Cluster) -> None:
    def tool(title: str):  # type: ignore[no-untyped-def]
        return functools.partial(server.tool, title=title, annotations=RUNS_COMMANDS)

    async def ask_routed(command: str, ctx: Context) -> object:
        return ask(cluster, [command], "the least loaded capable node", ctx)

    async def ask_named(command: str, node_id: str, ctx: Context) -> object:
        return ask(cluster, [command], f"node {node_id}", ctx)

    async def ask_parallel(commands: list[str], ctx: Context) -> object:
        return ask(cluster, commands, "the capable nodes, placed by load", ctx)

    async def ask_broadcast(command: str, pattern: str, ctx: Context) -> object:
        return ask(cluster, [command], f"every node matching {pattern!r}", ctx)

    async def ask_job(command: str, node_name: str | None, ctx: Context) -> object:
        return ask(cluster, [command], f"node {node_name}" if node_name else "the least loaded capable node", ctx)

    @tool("Run a command on the best node")(name="cluster_bash")
    async def cluster_bash(
        command: Command, ctx: Context,
        confirmation: Annotated[Approval, Resolve(ask_routed)],
        requires_os: RequiresOs = None, requires_arch: RequiresArch = None, requires_tags: RequiresTags = None,
        timeout_s: TimeoutS = settings.COMMAND_TIMEOUT_S,
    ) -> Annotated[CallToolResult, models.CommandResult]:
        """Run a shell command on the best capable node: filtered by os/arch/tags, then least loaded (load per
        CPU, memory, jobs running there); light commands (ls, cat, ...) may run on the controller. The result
        says which node ran it and why. Canceling the call stops the command on the node."""
        call = Call(approval=approval_from(confirmation), progress=progress_to(ctx))
        return await run_core(lambda: cluster.run(command, requires_os, requires_arch, requires_tags or [],
                                                  timeout_s, call), call, ctx, elapsed=command[:60])

    @tool("Run a command on a named node")(name="offload_to")
    async def offload_to(
        command: Command, node_id: Annotated[str, Field(description="The node's name (list_worker_nodes)")],
        ctx: Context, confirmation: Annotated[Approval, Resolve(ask_named)],
        timeout_s: TimeoutS = settings.COMMAND_TIMEOUT_S,
    ) -> Annotated[CallToolResult, models.CommandResult]:
        """Run a shell command on the named node. Canceling the call stops the command on the node."""
        call = Call(approval=approval_from(confirmation), progress=progress_to(ctx))
        return await run_core(lambda: cluster.offload(command, node_id, timeout_s, call), call, ctx,
                              elapsed=f"{command[:60]} on {node_id}")

    @tool("Run several commands at once, placed by load")(name="parallel_execute")
    async def parallel_execute(
        commands: Annotated[list[str], Field(description="The shell commands; each runs on its own", min_length=1)],
        ctx: Context, confirmation: Annotated[Approval, Resolve(ask_parallel)],
        requires_os: RequiresOs = None, requires_arch: RequiresArch = None, requires_tags: RequiresTags = None,
        timeout_s: TimeoutS = settings.COMMAND_TIMEOUT_S,
    ) -> Annotated[CallToolResult, models.ParallelResult]:
        """Run several commands at the same time, each placed by load on a capable node, in one Ansible run.
        Each command gets its own result; a refused command fails alone. Progress reports commands done/total;
        canceling the call stops every command still running."""
        call = Call(approval=approval_from(confirmation), progress=progress_to(ctx))
        return await run_core(lambda: cluster.parallel(commands, requires_os, requires_arch, requires_tags or [],
                                                       timeout_s, call), call, ctx)

    @tool("Run a command on every matching node")(name="cluster_broadcast")
    async def cluster_broadcast(
        command: Command,
        pattern: Annotated[str, Field(description="An Ansible host pattern: all, a node name, tag_gpu:&available, "
                                                  "os_linux:!unreachable, load_idle", min_length=1)],
        ctx: Context, confirmation: Annotated[Approval, Resolve(ask_broadcast)],
        timeout_s: TimeoutS = settings.COMMAND_TIMEOUT_S,
    ) -> Annotated[CallToolResult, models.BroadcastResult]:
        """Run a command on every node matching an Ansible host pattern, one result per node. Progress reports
        nodes done/total; canceling the call stops it on every node."""
        call = Call(approval=approval_from(confirmation), progress=progress_to(ctx))
        return await run_core(lambda: cluster.broadcast(command, pattern, timeout_s, call), call, ctx)

    @tool("Start a tracked job")(name="submit_job")
    async def submit_job(
        command: Command, ctx: Context, confirmation: Annotated[Approval, Resolve(ask_job)],
        node_name: Annotated[str | None, Field(description="Run on this node; none: routed like cluster_bash")] = None,
        requires_os: RequiresOs = None, requires_arch: RequiresArch = None, requires_tags: RequiresTags = None,
        description: Annotated[str, Field(description="A note kept with the job")] = "",
        timeout_s: Annotated[int, Field(description="Seconds before the job is stopped on its node", ge=1,
                                        le=settings.MAX_TIMEOUT_S)] = settings.JOB_TIMEOUT_S,
        wait_s: Annotated[float, Field(description="Seconds to wait for the job to end before answering 'running'",
                                       ge=0, le=settings.MAX_JOB_WAIT_S)] = settings.JOB_WAIT_S,
    ) -> Annotated[CallToolResult, JobResult]:
        """Start a tracked job (on node_name, or routed like cluster_bash) that outlives this call and the
        bridge. Waits up to wait_s: a job that ended returns its full result, otherwise its job_id with status
        running (follow it with get_job / job_output, or the resource jexida://jobs/{job_id}). Progress
        notifications carry its live output. Canceling this call stops only the wait: the job is tracked and
        keeps running (cancel_job stops it)."""
        call = Call(approval=approval_from(confirmation))
        report = progress_to(ctx)

        def progress(info: JobInfo) -> None:
            if report is not None:
                last = info.last_lines[-1] if info.last_lines else ""
                report(float(info.stdout_bytes), None,
                       f"{info.job_id} running on {info.node}: {info.stdout_bytes} bytes; {last}")

        return await run_core(lambda: cluster.jobs.submit(command, node_name, requires_os, requires_arch,
                                                          requires_tags or [], description, timeout_s, wait_s,
                                                          progress if in_request(ctx) else None, call), call, ctx)
