"""The web dashboard and the HTTP API: faces over the same core, served by `jexida serve --http`
on the MCP endpoint's port, behind the same token.

- ``/api/...`` (api.py): every MCP tool as ``POST /api/tools/<name>``, and the OpenAPI document;
  bearer token only (the Guard in server/http.py checks it).
- pages (pages.py, live.py, actions.py, login.py): server-rendered, read the core, and run the
  MCP tools for their buttons; the session cookie from the login page (session.py) lets them in.
- ``/static``: the stylesheet and the script, public (no secrets in them).

Nothing here decides anything the core or the tools do not: a page shows what they return.
"""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from mcp_bridge.core import Cluster
from mcp_bridge.web import actions, api, live, login, pages
from mcp_bridge.web.context import HERE, Web

# The paths the pages own. Anything else (/mcp, /api/..., unknown paths) needs the bearer token.
PAGE_PATHS = frozenset({"/", "/login", "/logout", "/jobs", "/audit"})
PAGE_PREFIXES = ("/static/", "/nodes/", "/jobs/")


def routes(cluster: Cluster, server: MCPServer, token: str) -> list[BaseRoute]:
    web = Web.make(cluster, server, token)
    return [
        *api.routes(server),
        *login.routes(web),
        *actions.routes(web),
        *live.routes(web),
        *pages.routes(web),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]


def is_page(path: str) -> bool:
    """Paths that take the session cookie (or are public, like /login) instead of a bearer token."""
    return path in PAGE_PATHS or path.startswith(PAGE_PREFIXES)
