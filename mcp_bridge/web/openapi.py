"""The HTTP API's OpenAPI 3.1 document, made from the MCP tools' own schemas (tools/list).

One path per tool: ``POST /api/tools/<name>``, its request body the tool's inputSchema and its
200 response the tool's outputSchema. Nothing is written by hand, so the document cannot drift
from the tools. The schemas' local ``$defs`` move to ``components/schemas`` (in OpenAPI a
``$ref`` like ``#/$defs/X`` would point at the document's root).
"""

from __future__ import annotations

import copy
from typing import Any

from mcp_types import Tool

from mcp_bridge import __version__

Schema = dict[str, Any]

ERROR: Schema = {
    "type": "object", "required": ["error"],
    "properties": {"error": {"type": "string", "description": "what was wrong and what to do"}},
}
VALIDATION_ERROR: Schema = {
    "type": "object", "required": ["error", "detail"],
    "properties": {
        "error": {"type": "string"},
        "detail": {"type": "array", "items": {"type": "object", "properties": {
            "loc": {"type": "array", "items": {"type": "string"}}, "msg": {"type": "string"},
            "type": {"type": "string"}}}},
    },
}
REJECTED: Schema = {
    "type": "object", "required": ["error", "result"],
    "properties": {"error": {"type": "string"},
                   "result": {"type": "object", "description": "the tool's result, with status rejected"}},
}


def _rewrite_refs(node: Any, names: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/"):
                out[key] = "#/components/schemas/" + names[value.removeprefix("#/$defs/")]
            else:
                out[key] = _rewrite_refs(value, names)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(item, names) for item in node]
    return node


def lift_defs(schema: Schema, tool: str, components: dict[str, Schema]) -> Schema:
    """``schema`` without its ``$defs``, which join ``components`` (renamed per tool if a name clashes)."""
    schema = copy.deepcopy(schema)
    defs: dict[str, Schema] = schema.pop("$defs", {}) or {}
    same = {name: name for name in defs}
    names: dict[str, str] = {}
    for name, definition in defs.items():
        # Same model, same schema (CommandResult in several tools): shared; a different one with the same name
        # gets the tool's name in front.
        shared = _rewrite_refs(definition, same)
        names[name] = name if components.get(name, shared) == shared else f"{tool}_{name}"
    for name, definition in defs.items():
        components[names[name]] = _rewrite_refs(definition, names)
    return _rewrite_refs(schema, names)


def _error(description: str, schema: str = "Error") -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}


def _operation(tool: Tool, components: dict[str, Schema]) -> dict[str, Any]:
    input_schema = lift_defs(tool.input_schema, tool.name, components)
    output_schema = lift_defs(tool.output_schema, tool.name, components) if tool.output_schema else {"type": "object"}
    annotations = tool.annotations
    read_only = bool(annotations and annotations.read_only_hint)
    responses: dict[str, Any] = {
        "200": {"description": "the tool's structured result (as MCP's structuredContent)",
                "content": {"application/json": {"schema": output_schema}}},
        "400": _error("a user error: what was wrong and what to do"),
        "401": _error("no token, or the wrong one: send Authorization: Bearer <token>"),
        "404": _error("unknown node or job"),
        "422": _error("the arguments do not match the input schema", "ValidationError"),
    }
    if not read_only:
        responses["403"] = _error("the command policy refused the command; nothing ran", "Rejected")
    operation: dict[str, Any] = {
        "operationId": tool.name,
        "summary": tool.title or tool.name,
        "description": tool.description or "",
        "tags": ["reads" if read_only else "changes"],
        "requestBody": {"required": bool(input_schema.get("required")),
                        "content": {"application/json": {"schema": input_schema}}},
        "responses": responses,
    }
    if annotations is not None:
        operation["x-mcp-annotations"] = annotations.model_dump(by_alias=True, exclude_none=True)
    return operation


def document(tools: list[Tool]) -> dict[str, Any]:
    """The OpenAPI document for ``tools`` (``await server.list_tools()``)."""
    components: dict[str, Schema] = {"Error": ERROR, "ValidationError": VALIDATION_ERROR, "Rejected": REJECTED}
    paths = {f"/api/tools/{tool.name}": {"post": _operation(tool, components)}
             for tool in sorted(tools, key=lambda t: t.name)}
    return {
        "openapi": "3.1.0",
        "info": {"title": "jexida-cluster HTTP API", "version": __version__,
                 "description": "Every MCP tool of `jexida serve --http`, as POST /api/tools/<name> with the tool's "
                                "arguments as a JSON object. The same functions and schemas as over MCP; every "
                                "call is audited with face http-api."},
        "paths": paths,
        "components": {"schemas": components,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                      "description": "JEXIDA_TOKEN, or the token "
                                                                     "`jexida serve --http` printed"}}},
        "security": [{"bearer": []}],
    }
