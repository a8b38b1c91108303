"""The MCP face: typed, annotated tools, resources, prompts and completion over the core, on
stdio (Claude Code) or streamable HTTP (with the web pages and the HTTP API on the same port)."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence

from mcp.server.mcpserver import MCPServer

from mcp_bridge import __version__, execution, settings
from mcp_bridge.core import BridgeConfig, Cluster
from mcp_bridge.server import resources, tools_commands, tools_nodes

INSTRUCTIONS = """\
Runs shell commands on a fleet of worker machines through Ansible.
- cluster_bash: run a command on the least-loaded node that meets the requirements (os, arch, tags).
- offload_to: run on a named node. parallel_execute: several commands at once, placed by load.
- cluster_broadcast: run on every node matching an Ansible host pattern such as tag_gpu:&available.
- submit_job: a tracked job that outlives the call; get_job, job_output, cancel_job, list_jobs follow it.
- cluster_status / list_worker_nodes / get_worker_node / check_worker_node: what the cluster looks like now.
- Resources: jexida://nodes, jexida://nodes/{name}, jexida://jobs, jexida://jobs/{job_id} (+ /log).
Results carry rc, ok, status (succeeded, failed, timeout, unreachable, rejected, declined, canceled), output
and the routing reason. Some commands need a person's yes (the policy asks through elicitation)."""


def build_server(cluster: Cluster) -> MCPServer:
    hub = resources.UpdateHub()
    server = MCPServer(name="jexida-cluster", title="jexida cluster", instructions=INSTRUCTIONS, version=__version__,
                       subscriptions=hub.bus, lifespan=hub.lifespan, log_level="WARNING")
    hub.install(server)
    tools_commands.register(server, cluster)
    tools_nodes.register(server, cluster)
    resources.register(server, cluster, hub)
    return server


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


def serve(inventory: str | None, http: bool = False, host: str = settings.HTTP_HOST, port: int = settings.HTTP_PORT,
          allowed_hosts: Sequence[str] = ()) -> None:
    # The SDK logs to stderr (stdout is the stdio protocol); keep it to warnings.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    return_freed_memory_to_the_os()
    cluster = Cluster(BridgeConfig.from_env(inventory, face="mcp-http" if http else "mcp-stdio"))
    execution.start_warm()  # a long-running bridge: Ansible stays imported for its calls (mcp_bridge/warm/)
    cluster.jobs.start_monitor()  # re-attach to jobs that were running before a restart
    server = build_server(cluster)
    if not http:
        server.run("stdio")
        return
    import uvicorn

    from mcp_bridge.server.http import allowed_names, http_app, http_token

    names = allowed_names(host, allowed_hosts)
    token, made = http_token(cluster.config.home)
    app = http_app(server, token, host, port, names, *web_parts(cluster, server, token))
    shown = next(iter(sorted(names)))
    where = f"http://{shown}:{port}"
    print(f"jexida: serving MCP on {where}/mcp (Host must be one of: {', '.join(sorted(names))})", file=sys.stderr)
    print(f"jexida: dashboard on {where}/ (log in with the token), HTTP API on {where}/api/tools/<tool>",
          file=sys.stderr)
    if made:
        print(f"jexida: made a new token in {cluster.config.home}/http_token", file=sys.stderr)
    config = {"type": "http", "url": f"{where}/mcp", "headers": {"Authorization": f"Bearer {token}"}}
    print(f"jexida: client config: {json.dumps(config)}", file=sys.stderr, flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")


def web_parts(cluster: Cluster, server: MCPServer, token: str) -> tuple[list, object]:  # type: ignore[type-arg]
    """The web pages and the HTTP API (mcp_bridge.web), when present."""
    try:
        from mcp_bridge import web
    except ImportError:
        return [], lambda path: False
    return web.routes(cluster, server, token), web.is_page
