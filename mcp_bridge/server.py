"""The MCP face: typed tools over the core, on stdio (Claude Code) or streamable HTTP.

Each tool is a thin async wrapper: it moves the blocking core call (ansible-runner) to a
worker thread, so the event loop keeps serving other calls, and turns caller errors into
MCP tool errors with a message that says what to do.
"""

from __future__ import annotations

import functools
import hmac
import json
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import CallToolResult, TextContent
from pydantic import BaseModel

from mcp_bridge import __version__, models, settings
from mcp_bridge.core import BridgeConfig, BridgeError, Cluster
from mcp_bridge.errors import JexidaError
from mcp_bridge.jobs import CancelResult, JobInfo, JobOutput, JobResult

T = TypeVar("T")
# A tool's result: its typed model as structured content (the schema below), or our error message as is.
CommandOut = Annotated[CallToolResult, models.CommandResult]
ParallelOut = Annotated[CallToolResult, models.ParallelResult]
BroadcastOut = Annotated[CallToolResult, models.BroadcastResult]
StatusOut = Annotated[CallToolResult, models.ClusterStatus]
NodeListOut = Annotated[CallToolResult, list[models.NodeInfo]]
NodeOut = Annotated[CallToolResult, models.NodeInfo]
CheckOut = Annotated[CallToolResult, models.NodeCheck]
RegisterOut = Annotated[CallToolResult, models.RegisterResult]
ProvisionOut = Annotated[CallToolResult, models.ProvisionResult]
JobResultOut = Annotated[CallToolResult, JobResult]
JobOut = Annotated[CallToolResult, JobInfo]
JobOutputOut = Annotated[CallToolResult, JobOutput]
CancelOut = Annotated[CallToolResult, CancelResult]
JobListOut = Annotated[CallToolResult, list[JobInfo]]

INSTRUCTIONS = """\
Runs shell commands on a fleet of worker machines through Ansible.
- cluster_bash: run a command on the least-loaded node that meets the requirements (os, arch, tags).
- offload_to: run on a named node. parallel_execute: several commands at once, placed by load.
- cluster_broadcast: run on every node matching an Ansible host pattern such as tag_gpu:&available.
- cluster_status / list_worker_nodes / get_worker_node / check_worker_node: what the cluster looks like now.
Results carry rc, ok, status (succeeded, failed, timeout, unreachable, rejected), output and the routing reason."""


def structured(value: Any) -> CallToolResult:
    """A core result (a model or a list of models) as the tool's structured content."""
    if isinstance(value, list):
        data: Any = {"result": [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value]}
    else:
        data = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
    text = json.dumps(data, indent=2)
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=data)


def build_server(cluster: Cluster) -> MCPServer:
    server = MCPServer(name="jexida-cluster", instructions=INSTRUCTIONS, version=__version__)

    async def call(function: Callable[..., Any], *args: Any, **kwargs: Any) -> CallToolResult:
        """Run a blocking core call in a worker thread; a user error comes back as the tool error, word for word."""
        try:
            value = await anyio.to_thread.run_sync(functools.partial(function, *args, **kwargs))
        except JexidaError as exc:
            return CallToolResult(content=[TextContent(type="text", text=str(exc))], is_error=True)
        return structured(value)

    def tool(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        return server.tool(name=fn.__name__, description=(fn.__doc__ or "").strip())(fn)

    @tool
    async def cluster_bash(command: str, requires_os: str | None = None, requires_arch: str | None = None,
                           requires_tags: list[str] | None = None,
                           timeout_s: int = settings.COMMAND_TIMEOUT_S) -> CommandOut:
        """Run a shell command on the best capable node: filtered by os/arch/tags, then least loaded
        (load per CPU, memory, jobs running there). The result says which node ran it and why."""
        return await call(cluster.run, command, requires_os, requires_arch, requires_tags or [], timeout_s)

    @tool
    async def offload_to(command: str, node_id: str, timeout_s: int = settings.COMMAND_TIMEOUT_S) -> CommandOut:
        """Run a shell command on the named node."""
        return await call(cluster.offload, command, node_id, timeout_s)

    @tool
    async def parallel_execute(commands: list[str], requires_os: str | None = None,
                               requires_arch: str | None = None, requires_tags: list[str] | None = None,
                               timeout_s: int = settings.COMMAND_TIMEOUT_S) -> ParallelOut:
        """Run several commands at the same time, each placed by load on a capable node.
        Each command gets its own result; a rejected command fails alone."""
        return await call(cluster.parallel, commands, requires_os, requires_arch, requires_tags or [], timeout_s)

    @tool
    async def cluster_broadcast(command: str, pattern: str,
                                timeout_s: int = settings.COMMAND_TIMEOUT_S) -> BroadcastOut:
        """Run a command on every node matching an Ansible host pattern (all, tag_gpu:&available,
        os_linux:!unreachable, a node name), one result per node."""
        return await call(cluster.broadcast, command, pattern, timeout_s)

    @tool
    async def cluster_status() -> StatusOut:
        """Every node with fresh facts (load, CPUs, memory, disk, jobs), health, load group and summary counts."""
        return await call(cluster.status, True)

    @tool
    async def list_worker_nodes(active_only: bool = True, tag: str | None = None) -> NodeListOut:
        """The registered worker nodes (from the inventory), optionally only active ones or one tag."""
        return await call(cluster.list_nodes, active_only, tag)

    @tool
    async def get_worker_node(name: str) -> NodeOut:
        """One node: registry entry, groups, health and last facts."""
        return await call(cluster.get_node, name)

    @tool
    async def check_worker_node(name: str, detailed: bool = False) -> CheckOut:
        """Probe a node now: reachability and latency; with detailed, also Python, disk, memory and
        whether its job folders are writable."""
        return await call(cluster.check_node, name, detailed)

    @tool
    async def register_worker_node(name: str, host: str, user: str = "jexida", ssh_port: int = 22,
                                   tags: list[str] | None = None, is_active: bool = True) -> RegisterOut:
        """Add a node to the registry, or update it (by name). The write is validated and atomic."""
        return await call(cluster.register_node, name, host, user, ssh_port, tags or [], is_active)

    @tool
    async def provision_worker_node(name: str, dry_run: bool = True) -> ProvisionOut:
        """Run playbooks/bootstrap.yml for a registered node (check mode when dry_run), with a per-task summary."""
        return await call(cluster.provision, name, dry_run)

    @tool
    async def submit_job(command: str, ctx: Context, node_name: str | None = None, requires_os: str | None = None,
                         requires_arch: str | None = None, requires_tags: list[str] | None = None,
                         description: str = "", timeout_s: int = settings.JOB_TIMEOUT_S,
                         wait_s: float = settings.JOB_WAIT_S) -> JobResultOut:
        """Start a tracked job (on node_name, or routed like cluster_bash) that outlives this call and the
        bridge. Waits up to wait_s: a job that ended returns its full result, otherwise its job_id with
        status running (follow it with get_job / job_output). Progress notifications carry its live output."""
        portal = anyio.from_thread

        def progress(info: JobInfo) -> None:
            last = info.last_lines[-1] if info.last_lines else ""
            portal.run(functools.partial(ctx.report_progress, float(info.stdout_bytes), None,
                                         f"{info.job_id} running on {info.node}: {info.stdout_bytes} bytes; {last}"))

        return await call(cluster.jobs.submit, command, node_name, requires_os, requires_arch,
                          requires_tags or [], description, timeout_s, wait_s, progress)

    @tool
    async def get_job(job_id: str) -> JobOut:
        """A job's status (queued, running, succeeded, failed, timeout, canceled, lost), node, rc, times,
        output sizes and last lines."""
        return await call(cluster.jobs.get, job_id)

    @tool
    async def job_output(job_id: str, stream: str = "stdout", offset: int = 0, limit: int = settings.OUTPUT_PAGE_BYTES,
                         tail: int | None = None) -> JobOutputOut:
        """Read a job's whole output from its log on the node: a page from offset (bytes, up to limit),
        or the last `tail` lines. next_offset continues the paging."""
        return await call(cluster.jobs.output, job_id, stream, offset, limit, tail)

    @tool
    async def cancel_job(job_id: str) -> CancelOut:
        """Stop a job's whole process tree on its node. Cancelling a finished job changes nothing and says so."""
        return await call(cluster.jobs.cancel, job_id)

    @tool
    async def list_jobs(node_name: str | None = None, status: str | None = None,
                        limit: int = settings.JOB_LIST_LIMIT) -> JobListOut:
        """Recent jobs, newest first, optionally by node and status."""
        return await call(cluster.jobs.list, node_name, status, limit)

    return server


class BearerTokenMiddleware:
    """Reject HTTP requests without `Authorization: Bearer <JEXIDA_TOKEN>` (constant-time compare)."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            given = headers.get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                body = b'{"error": "missing or wrong bearer token: send Authorization: Bearer $JEXIDA_TOKEN"}'
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"www-authenticate", b"Bearer")]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def http_app(cluster: Cluster, host: str, port: int, token: str | None) -> Any:
    """The streamable HTTP app: Host/Origin checked against this address; a token unless on loopback."""
    if not is_loopback(host) and not token:
        raise BridgeError(f"refusing to serve on {host} without a token: set JEXIDA_TOKEN (or bind to 127.0.0.1)")
    names = {host, "localhost", "127.0.0.1"} if is_loopback(host) else {host}
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[f"{name}:{port}" for name in names],
        allowed_origins=[f"http://{name}:{port}" for name in names],
    )
    app = build_server(cluster).streamable_http_app(transport_security=security, host=host)
    return BearerTokenMiddleware(app, token) if token else app


def return_freed_memory_to_the_os() -> None:
    """Make glibc hand large freed buffers back at once instead of keeping them in the heap.

    A capped result still passes through ansible-runner as a few MB of JSON; with glibc's
    dynamic mmap threshold those buffers end up in the heap and a long-running bridge keeps
    them. Fixed thresholds keep the resident size near its idle value (measured in bench/).
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(name)
        m_trim_threshold, m_mmap_threshold = -1, -3
        libc.mallopt(m_mmap_threshold, 256 * 1024)
        libc.mallopt(m_trim_threshold, 1024 * 1024)
    except (OSError, AttributeError):  # not glibc: nothing to tune
        return


def serve(inventory: str | None, http: bool = False, host: str = settings.HTTP_HOST,
          port: int = settings.HTTP_PORT) -> None:
    face = "mcp-http" if http else "mcp-stdio"
    return_freed_memory_to_the_os()
    cluster = Cluster(BridgeConfig.from_env(inventory, face=face))
    cluster.jobs.start_monitor()  # re-attach to jobs that were running before a restart
    if not http:
        build_server(cluster).run("stdio")
        return
    import uvicorn

    token = os.environ.get("JEXIDA_TOKEN") or None
    app = http_app(cluster, host, port, token)
    print(f"jexida: serving MCP on http://{host}:{port}/mcp ({'token required' if token else 'loopback, no token'})",
          file=sys.stderr, flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
