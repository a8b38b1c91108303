"""The MCP tools about nodes and jobs: status, the registry, checks, provisioning, job reads and cancel."""


from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import Field

from mcp_bridge import models, settings
from mcp_bridge.call import Call
from mcp_bridge.core import Cluster
from mcp_bridge.jobs import CancelResult, JobInfo, JobOutput
from mcp_bridge.server.calls import run_core

READS_NODES = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=True)
READS_LOCAL = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)

NodeName = Annotated[str, Field(description="The node's name (list_worker_nodes)", min_length=1)]
JobId = Annotated[str, Field(description="The job's id, like j-20261121-060000-a1b2c3 (list_jobs)")]


def register(server: MCPServer, cluster: Cluster) -> None:
    async def core(work):  # type: ignore[no-untyped-def]
        call = Call()
        return await run_core(work, call)

    @server.tool(name="cluster_status", title="Cluster status", annotations=READS_NODES)
    async def cluster_status() -> Annotated[CallToolResult, models.ClusterStatus]:
        """Every node with fresh facts (load, CPUs, memory, disk, jobs), health, load group and summary counts."""
        return await core(lambda: cluster.status(True))

    @server.tool(name="list_worker_nodes", title="List worker nodes", annotations=READS_NODES)
    async def list_worker_nodes(
        active_only: Annotated[bool, Field(description="Leave out nodes marked inactive")] = True,
        tag: Annotated[str | None, Field(description="Only nodes with this tag")] = None,
    ) -> Annotated[CallToolResult, list[models.NodeInfo]]:
        """The registered worker nodes as the inventory sees them (facts at most a few seconds old)."""
        return await core(lambda: cluster.list_nodes(active_only, tag))

    @server.tool(name="get_worker_node", title="One worker node", annotations=READS_NODES)
    async def get_worker_node(name: NodeName) -> Annotated[CallToolResult, models.NodeInfo]:
        """One node: registry entry, groups, health and last facts."""
        return await core(lambda: cluster.get_node(name))

    @server.tool(name="check_worker_node", title="Check a node now", annotations=READS_NODES)
    async def check_worker_node(
        name: NodeName,
        detailed: Annotated[bool, Field(description="Also Python, disk, memory and whether its job folders are "
                                                    "writable")] = False,
    ) -> Annotated[CallToolResult, models.NodeCheck]:
        """Probe a node now: reachability and latency; with detailed, also Python, disk, memory and whether its
        job folders are writable."""
        return await core(lambda: cluster.check_node(name, detailed))

    @server.tool(name="register_worker_node", title="Add or update a node",
                 annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True,
                                             open_world_hint=False))
    async def register_worker_node(
        name: Annotated[str, Field(description="A unique name: letters, digits, '_', '-', '.'", min_length=1)],
        host: Annotated[str, Field(description="Host name or address the controller reaches it at", min_length=1)],
        user: Annotated[str, Field(description="The user to log in as")] = "jexida",
        ssh_port: Annotated[int, Field(description="SSH port", ge=1, le=65535)] = 22,
        tags: Annotated[list[str] | None, Field(description="Tags for routing (gpu, build, ...)")] = None,
        is_active: Annotated[bool, Field(description="Take part in routing")] = True,
        via: Annotated[str | None, Field(description="The node (a bastion) this node is reached through; "
                                                     "an empty string removes it, leaving it out keeps it")] = None,
        execution_node: Annotated[str | None, Field(
            description="The node that runs this node's commands (an execution node: ansible-runner worker); "
                        "an empty string removes it, leaving it out keeps it")] = None,
    ) -> Annotated[CallToolResult, models.RegisterResult]:
        """Add a node to the registry, or update it (by name). The write is validated and atomic; a new node is
        reached with the controller key (through the bastion named by `via`, if any)."""
        return await core(lambda: cluster.register_node(name, host, user, ssh_port, tags or [], is_active, via=via,
                                                         execution_node=execution_node))

    @server.tool(name="provision_worker_node", title="Bootstrap a node",
                 annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True,
                                             open_world_hint=True))
    async def provision_worker_node(
        name: NodeName,
        dry_run: Annotated[bool, Field(description="Check mode: show what would change, change nothing")] = True,
    ) -> Annotated[CallToolResult, models.ProvisionResult]:
        """Run the bootstrap playbook (jexida.cluster.bootstrap) for a registered node, with a per-task summary."""
        return await core(lambda: cluster.provision(name, dry_run))

    @server.tool(name="get_job", title="A job's status", annotations=READS_NODES)
    async def get_job(job_id: JobId) -> Annotated[CallToolResult, JobInfo]:
        """A job's status (queued, running, succeeded, failed, timeout, canceled, lost, rejected, declined), node,
        rc, times, output sizes and last lines."""
        return await core(lambda: cluster.jobs.get(job_id))

    @server.tool(name="job_output", title="A job's output", annotations=READS_NODES)
    async def job_output(
        job_id: JobId,
        stream: Annotated[str, Field(description="stdout or stderr", pattern="^(stdout|stderr)$")] = "stdout",
        offset: Annotated[int, Field(description="Byte offset to read from", ge=0)] = 0,
        limit: Annotated[int, Field(description="Bytes to read at most", ge=1,
                                    le=settings.MAX_OUTPUT_PAGE_BYTES)] = settings.OUTPUT_PAGE_BYTES,
        tail: Annotated[int | None, Field(description="The last N lines instead of a page", ge=1)] = None,
    ) -> Annotated[CallToolResult, JobOutput]:
        """Read a job's whole output from its log on the node: a page from offset (bytes, up to limit), or the
        last `tail` lines. next_offset continues the paging."""
        return await core(lambda: cluster.jobs.output(job_id, stream, offset, limit, tail))

    @server.tool(name="cancel_job", title="Cancel a job",
                 annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True,
                                             open_world_hint=True))
    async def cancel_job(job_id: JobId) -> Annotated[CallToolResult, CancelResult]:
        """Stop a job's whole process tree on its node. Canceling a finished job changes nothing and says so."""
        return await core(lambda: cluster.jobs.cancel(job_id))

    @server.tool(name="list_jobs", title="Recent jobs", annotations=READS_LOCAL)
    async def list_jobs(
        node_name: Annotated[str | None, Field(description="Only jobs of this node")] = None,
        status: Annotated[str | None, Field(description="Only jobs with this status")] = None,
        limit: Annotated[int, Field(description="How many at most", ge=1,
                                    le=settings.MAX_JOB_LIST_LIMIT)] = settings.JOB_LIST_LIMIT,
    ) -> Annotated[CallToolResult, list[JobInfo]]:
        """Recent jobs, newest first, optionally by node and status (from the controller's records)."""
        return await core(lambda: cluster.jobs.list(node_name, status, limit))
