"""MCP resources, prompts and completion, and resource-updated notifications for jobs.

Resources: ``jexida://nodes``, ``jexida://nodes/{name}``, ``jexida://tags/{tag}``,
``jexida://groups/{+pattern}`` (nodes matching a host pattern), ``jexida://jobs``,
``jexida://jobs/{job_id}`` and ``jexida://jobs/{job_id}/log{?stream,offset,limit,tail}``.

While a job runs and when it ends, subscribers of its resources hear of each change: under
2025-11-25 through ``resources/subscribe`` (which the SDK leaves to the server: we keep the
subscribed connections), under 2026-07-28 through ``subscriptions/listen`` (the SDK's bus).

MCP completes arguments of prompts and resource templates (the protocol has no completion for
tool arguments), so node names, tags, host-pattern groups and job ids are completed for the
templates above and for prompts that take the same arguments as the tools.
"""


import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import mcp_types as types
from mcp.server.mcpserver import MCPServer
from mcp.server.subscriptions import InMemorySubscriptionBus, ResourceUpdated
from mcp_types import Completion, CompletionArgument, CompletionContext, PromptReference, ResourceTemplateReference

from mcp_bridge.core import Cluster

JOB_LOG_TAIL_LINES = 100
MAX_COMPLETIONS = 100


class UpdateHub:
    """One publish() for both protocol generations, callable from any thread."""

    def __init__(self) -> None:
        self.bus = InMemorySubscriptionBus()
        self.legacy: dict[str, dict[int, Any]] = {}  # uri -> {id(connection): connection}
        self.token: Any = None  # the event loop's, taken in the server's lifespan

    async def on_subscribe(self, ctx: Any, params: types.SubscribeRequestParams) -> types.EmptyResult:
        connection = ctx.session._connection  # the SDK keeps no subscriber list: we do, per connection
        self.legacy.setdefault(params.uri, {})[id(connection)] = connection
        connection.exit_stack.callback(lambda: self.legacy.get(params.uri, {}).pop(id(connection), None))
        return types.EmptyResult()

    async def on_unsubscribe(self, ctx: Any, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        self.legacy.get(params.uri, {}).pop(id(ctx.session._connection), None)
        return types.EmptyResult()

    async def publish(self, uri: str) -> None:
        await self.bus.publish(ResourceUpdated(uri=uri))
        for connection in list(self.legacy.get(uri, {}).values()):
            await connection.send_resource_updated(uri)

    def publish_from_thread(self, *uris: str) -> None:
        if self.token is None:
            return  # no client has connected yet: nobody to tell

        async def all_of_them() -> None:
            for uri in uris:
                await self.publish(uri)

        try:
            anyio.from_thread.run(all_of_them, token=self.token)
        except RuntimeError:  # the event loop is gone (shutting down)
            self.token = None

    @asynccontextmanager
    async def lifespan(self, server: MCPServer) -> AsyncIterator[dict[str, Any]]:
        self.token = anyio.lowlevel.current_token()
        yield {}

    def install(self, server: MCPServer) -> None:
        low = server._lowlevel_server
        low.add_request_handler("resources/subscribe", types.SubscribeRequestParams, self.on_subscribe)
        low.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, self.on_unsubscribe)


def job_uris(job_id: str) -> tuple[str, ...]:
    return (f"jexida://jobs/{job_id}", f"jexida://jobs/{job_id}/log", "jexida://jobs")


def _dump(value: Any) -> str:
    if isinstance(value, list):
        return json.dumps([v.model_dump(mode="json") for v in value], indent=2)
    return json.dumps(value.model_dump(mode="json"), indent=2)


def _prefix_filter(values: Any, typed: str) -> Completion:
    matches = sorted(v for v in set(values) if v.startswith(typed))
    return Completion(values=matches[:MAX_COMPLETIONS], total=len(matches), has_more=len(matches) > MAX_COMPLETIONS)


def _pattern_completion(groups: list[str], hosts: list[str], typed: str) -> Completion:
    """Complete the last part of an Ansible host pattern (after ':', ':&' or ':!')."""
    head, last = re.match(r"^(.*?[:&!]*)([^:&!]*)$", typed).groups()  # type: ignore[union-attr]
    matches = sorted(head + name for name in set(groups) | set(hosts) if name.startswith(last))
    return Completion(values=matches[:MAX_COMPLETIONS], total=len(matches), has_more=len(matches) > MAX_COMPLETIONS)


def register(server: MCPServer, cluster: Cluster, hub: UpdateHub) -> None:
    async def blocking(function: Any, *args: Any) -> Any:
        return await anyio.to_thread.run_sync(function, *args)

    @server.resource("jexida://nodes", name="nodes", title="All nodes", mime_type="application/json")
    async def nodes() -> str:
        """Every registered node with its health, load group and last facts."""
        return _dump(await blocking(cluster.list_nodes, False, None))

    @server.resource("jexida://nodes/{name}", name="node", title="One node", mime_type="application/json")
    async def node(name: str) -> str:
        """One node's registry entry, groups, health and facts."""
        return _dump(await blocking(cluster.get_node, name))

    @server.resource("jexida://tags/{tag}", name="nodes_by_tag", title="Nodes with a tag", mime_type="application/json")
    async def nodes_by_tag(tag: str) -> str:
        """The nodes carrying a tag."""
        return _dump(await blocking(cluster.list_nodes, False, tag))

    @server.resource("jexida://groups/{+pattern}", name="nodes_by_pattern", title="Nodes matching a host pattern",
                     mime_type="application/json")
    async def nodes_by_pattern(pattern: str) -> str:
        """The node names an Ansible host pattern (tag_gpu:&available) matches now."""
        return json.dumps(await blocking(cluster.directory.match, pattern))

    @server.resource("jexida://jobs", name="jobs", title="Recent jobs", mime_type="application/json")
    async def jobs() -> str:
        """The most recent tracked jobs, newest first."""
        return _dump(await blocking(cluster.jobs.list, None, None))

    @server.resource("jexida://jobs/{job_id}", name="job", title="One job", mime_type="application/json")
    async def job(job_id: str) -> str:
        """A job's status, node, rc, times, output sizes and last lines (updated while it runs)."""
        return _dump(await blocking(cluster.jobs.get, job_id))

    @server.resource("jexida://jobs/{job_id}/log{?stream,offset,limit,tail}", name="job_log", title="A job's log",
                     mime_type="text/plain")
    async def job_log(job_id: str, stream: str = "stdout", offset: int = -1, limit: int = 65536,
                      tail: int = JOB_LOG_TAIL_LINES) -> str:
        """A job's output from its log on the node: the last `tail` lines, or with offset >= 0 a page of
        `limit` bytes from there (the next page starts at offset + the bytes returned)."""
        if offset >= 0:
            page = await blocking(cluster.jobs.output, job_id, stream, offset, limit, None)
        else:
            page = await blocking(cluster.jobs.output, job_id, stream, 0, limit, tail)
        return page.data

    @server.prompt(name="diagnose_node", title="Diagnose a node")
    def diagnose_node(node_name: str) -> str:
        """Check one node and explain what is wrong with it, if anything."""
        return (f"Check the jexida worker node {node_name}: call check_worker_node with detailed=true, then "
                f"get_worker_node, and tell me whether it is healthy, what load it carries and what to fix.")

    @server.prompt(name="run_on_node", title="Run a command on a node")
    def run_on_node(node_name: str, command: str) -> str:
        """Run a command on a named node."""
        return f"Run `{command}` on the jexida node {node_name} with offload_to and show me the output."

    @server.prompt(name="broadcast", title="Run a command on matching nodes")
    def broadcast(pattern: str, command: str) -> str:
        """Run a command on every node matching a host pattern (tag_gpu:&available, load_idle, ...)."""
        return f"Run `{command}` on every jexida node matching {pattern!r} with cluster_broadcast and summarise."

    @server.prompt(name="nodes_with_tag", title="Nodes with a tag")
    def nodes_with_tag(tag: str) -> str:
        """Show the nodes carrying a tag."""
        return f"List the jexida nodes tagged {tag!r} (list_worker_nodes with tag={tag!r}) with their health."

    @server.prompt(name="follow_job", title="Follow a job")
    def follow_job(job_id: str) -> str:
        """Follow a tracked job until it ends."""
        return (f"Follow the jexida job {job_id}: get_job, and job_output with tail=50 while it runs; "
                f"tell me how it ended.")

    def names() -> list[str]:
        return list(cluster.directory.snapshot().nodes)

    def tags() -> list[str]:
        return [tag for node in cluster.directory.snapshot().nodes.values() for tag in node.tags]

    def job_ids() -> list[str]:
        return [job.job_id for job in cluster.jobs.list(None, None, 200)]

    def groups() -> list[str]:
        return list(cluster.directory.snapshot().inventory.groups)

    completers = {"name": names, "node_name": names, "node_id": names, "tag": tags, "job_id": job_ids}

    @server.completion()
    async def complete(ref: PromptReference | ResourceTemplateReference, argument: CompletionArgument,
                       context: CompletionContext | None) -> Completion | None:
        if argument.name == "pattern":
            found = await anyio.to_thread.run_sync(lambda: (groups(), names()))
            return _pattern_completion(found[0], found[1], argument.value)
        source = completers.get(argument.name)
        if source is None:
            return None
        return _prefix_filter(await anyio.to_thread.run_sync(source), argument.value)

    cluster.jobs.listeners.append(lambda job_id: hub.publish_from_thread(*job_uris(job_id)))
