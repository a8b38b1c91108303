"""Calling an MCP tool outside MCP: the HTTP API and the dashboard's buttons run the very tool
functions the MCP clients run (same validation, same resolvers, same core calls, same errors).

Outside an MCP request the tool's Context has no protocol version, so the confirm resolver asks
nobody ("no person to ask (HTTP API)") and the policy's on_unsure fallback decides, as for a
client without elicitation.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp_types import CallToolResult, TextContent
from pydantic import ValidationError

from mcp_bridge.core import current_face

log = logging.getLogger(__name__)

# The core's messages for names that do not exist (NodeError, JobError): these are "not found".
_NOT_FOUND = re.compile(r"^unknown (node|job) ")


def not_found(message: str) -> bool:
    """Whether a user error's message says that the named node or job does not exist."""
    return bool(_NOT_FOUND.match(message))


@dataclass
class ToolOutcome:
    """An HTTP status and the JSON body for one tool call."""

    status: int
    body: Any

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def error(self) -> str:
        return str(self.body.get("error", "")) if isinstance(self.body, dict) and not self.ok else ""


def validation_messages(exc: ValidationError) -> list[dict[str, Any]]:
    """Pydantic's errors without the input values, links and contexts (they may hold secrets or objects)."""
    return [{"loc": [str(part) for part in error["loc"]], "msg": error["msg"], "type": error["type"]}
            for error in exc.errors(include_url=False, include_input=False, include_context=False)]


def _text(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent)) or "tool error"


async def call_tool(server: MCPServer, name: str, arguments: dict[str, Any], face: str) -> ToolOutcome:
    """Run the MCP tool ``name`` with ``arguments``; every audit line it writes carries ``face``."""
    # The SDK has no public getter for one tool (2.3.0); the registry is where MCP finds it too.
    tool = server._tool_manager.get_tool(name)
    if tool is None:
        return ToolOutcome(404, {"error": f"unknown tool {name!r}: GET /api/openapi.json lists the tools"})
    try:
        tool.fn_metadata.validate_arguments(arguments)  # what tools/call validates, before anything runs
    except ValidationError as exc:
        details = validation_messages(exc)
        summary = "; ".join(f"{'.'.join(d['loc']) or 'arguments'}: {d['msg']}" for d in details)
        return ToolOutcome(422, {"error": f"bad arguments for {name}: {summary}", "detail": details})
    token = current_face.set(face)  # worker threads inherit it (anyio copies the context)
    try:
        result = await server.call_tool(name, arguments)
    except UnexpectedToolError as exc:  # a crash: its text stays in the server's log, as over MCP
        log.error("tool %s crashed", name, exc_info=exc.__cause__ or exc)
        return ToolOutcome(500, {"error": f"tool {name} crashed; the server's log has the details"})
    except ToolError as exc:  # raised on purpose (a resolver, the SDK): its words, without the SDK's prefix
        return ToolOutcome(400, {"error": str(exc.__cause__ or exc)})
    finally:
        current_face.reset(token)
    if not isinstance(result, CallToolResult):  # an input_required round: only resolvers that ask make one
        return ToolOutcome(500, {"error": f"tool {name} wanted an answer from a person, which HTTP cannot give"})
    if result.is_error:
        message = _text(result)
        return ToolOutcome(404 if not_found(message) else 400, {"error": message})
    data = result.structured_content
    if isinstance(data, dict) and data.get("status") == "rejected":
        # The policy (or its on_unsure fallback) refused the command: nothing ran. Same result, and a 4xx.
        return ToolOutcome(403, {"error": data.get("message") or data.get("error") or "rejected", "result": data})
    return ToolOutcome(200, data)
