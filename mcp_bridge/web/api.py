"""The HTTP API: ``POST /api/tools/<name>`` runs an MCP tool, ``GET /api/openapi.json`` describes them.

Authentication is the Guard's (server/http.py): these paths are not pages, so every request
needs ``Authorization: Bearer <token>``; a browser's session cookie does not count here, which
also keeps cross-site forms away from the API.
"""

from __future__ import annotations

import json
from typing import Any

from mcp.server.mcpserver import MCPServer
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mcp_bridge.web import openapi
from mcp_bridge.web.context import FACE_API
from mcp_bridge.web.tools import call_tool


def routes(server: MCPServer) -> list[Route]:
    async def run_tool(request: Request) -> Response:
        raw = await request.body()
        try:
            arguments: Any = json.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            return JSONResponse({"error": f"the body is not JSON ({exc}): send the tool's arguments as a JSON "
                                          "object, e.g. {\"name\": \"node1\"}"}, status_code=400)
        if not isinstance(arguments, dict):
            return JSONResponse({"error": "the body must be a JSON object of the tool's arguments (names as in "
                                          "GET /api/openapi.json)"}, status_code=400)
        outcome = await call_tool(server, request.path_params["name"], arguments, FACE_API)
        return JSONResponse(outcome.body, status_code=outcome.status)

    async def describe(request: Request) -> Response:
        return JSONResponse(openapi.document(await server.list_tools()))

    return [
        Route("/api/tools/{name}", run_tool, methods=["POST"]),
        Route("/api/openapi.json", describe, methods=["GET"]),
    ]
