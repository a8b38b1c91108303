"""How an MCP tool calls the blocking core: in a worker thread, with cancel, progress and errors.

- A user error (JexidaError) becomes the tool's error result with the message word for word
  (the SDK would prefix a raised ToolError with "Error executing tool X:").
- A client that cancels the request (``notifications/cancelled``, or a closed HTTP stream)
  cancels the handler: the call's commands are then stopped on their nodes (shielded, in a
  thread), and the handler waits for the core to finish before it goes, so the in-flight
  counts are released and the audit records ``canceled``.
- Progress from the core (hosts done) and a ticking elapsed time go to the client as MCP
  progress notifications (a no-op unless the client asked for them).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
from mcp.server.mcpserver import Context
from mcp_types import CallToolResult, TextContent
from pydantic import BaseModel

from mcp_bridge.call import Call
from mcp_bridge.errors import JexidaError

ELAPSED_EVERY_S = 5.0  # how often a long command reports that it still runs


def structured(value: Any) -> CallToolResult:
    """A core result (a model or a list of models) as the tool's structured content."""
    if isinstance(value, list):
        data: Any = {"result": [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value]}
    else:
        data = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
    return CallToolResult(content=[TextContent(type="text", text=json.dumps(data, indent=2))],
                          structured_content=data)


def user_error(exc: JexidaError) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=str(exc))], is_error=True)


def in_request(ctx: Context | None) -> bool:
    """True inside an MCP request (the HTTP API calls tools directly, outside one)."""
    return ctx is not None and ctx.protocol_version is not None


def progress_to(ctx: Context | None) -> Callable[[float, float | None, str], None] | None:
    """A progress callback for worker threads, or None outside an MCP request."""
    if not in_request(ctx):
        return None
    assert ctx is not None

    def report(progress: float, total: float | None, message: str) -> None:
        anyio.from_thread.run(functools.partial(ctx.report_progress, progress, total, message))

    return report


async def _tick_elapsed(ctx: Context, what: str) -> None:
    started = time.monotonic()
    while True:
        await anyio.sleep(ELAPSED_EVERY_S)
        elapsed = time.monotonic() - started
        await ctx.report_progress(round(elapsed, 1), None, f"{what}: still running after {elapsed:.0f}s")


async def run_core(work: Callable[[], Any], call: Call, ctx: Context | None = None,
                   elapsed: str | None = None) -> CallToolResult:
    """Run ``work`` (a blocking core call using ``call``) in a worker thread, as described above."""
    finished = False

    async def stop_on_cancel() -> None:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            if not finished:  # the client gave up, not us
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(call.cancel)
            raise

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(stop_on_cancel)
        if elapsed and in_request(ctx):
            assert ctx is not None
            tasks.start_soon(_tick_elapsed, ctx, elapsed)
        try:
            # abandon_on_cancel=False: even when canceled, wait for the core to finish (it does,
            # once the commands are stopped on the nodes), so nothing is left half done.
            value = await anyio.to_thread.run_sync(work)
        except JexidaError as exc:
            return user_error(exc)
        finally:
            finished = True
            tasks.cancel_scope.cancel()
    return structured(value)
