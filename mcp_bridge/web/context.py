"""What every page handler shares: the core, the MCP server (for its tools), the sessions, the
templates, and the checks a page does itself (the Guard leaves pages to their session cookie)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread
import jinja2
from mcp.server.mcpserver import MCPServer
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from mcp_bridge import __version__
from mcp_bridge.core import Cluster, current_face
from mcp_bridge.errors import JexidaError
from mcp_bridge.web.session import Session, Sessions, cookie_name

HERE = Path(__file__).parent
FACE_API = "http-api"  # the audit's face for /api/tools calls
FACE_PAGES = "web"  # ... and for what a person does on the pages (Check, Cancel)

# The pages load nothing from elsewhere and run no inline script: a strict policy costs nothing.
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}

T = TypeVar("T")
Handler = Callable[[Request], Awaitable[Response]]


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["mb"] = lambda v: "-" if v is None else (f"{v / 1024:.1f} GB" if v >= 1024 else f"{v} MB")
    env.filters["dash"] = lambda v: "-" if v is None or v == "" else v
    env.globals["version"] = __version__
    return env


@dataclass
class Web:
    cluster: Cluster
    server: MCPServer
    sessions: Sessions
    templates: jinja2.Environment

    @classmethod
    def make(cls, cluster: Cluster, server: MCPServer, token: str) -> Web:
        return cls(cluster, server, Sessions(token), _environment())

    # --- sessions ------------------------------------------------------------------------

    def session(self, request: Request) -> Session | None:
        return self.sessions.get(request.cookies.get(cookie_name(request.url.port)))

    # --- rendering -----------------------------------------------------------------------

    def page(self, request: Request, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        session = self.session(request)
        notes = list(session.notes) if session else []
        if session:
            session.notes.clear()  # shown once
        html = self.templates.get_template(template).render(
            request=request, session=session, csrf=session.csrf if session else "", notes=notes,
            path=request.url.path, **values)
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    def error(self, request: Request, status: int, message: str) -> HTMLResponse:
        return self.page(request, "error.html", status=status, status_code=status, message=message)

    # --- the core, from the event loop ---------------------------------------------------

    async def core(self, work: Callable[[], T]) -> T:
        """Run a blocking core call in a worker thread, audited as the dashboard's face."""
        token = current_face.set(FACE_PAGES)
        try:
            return await anyio.to_thread.run_sync(work)  # anyio copies the context: the core sees the face
        finally:
            current_face.reset(token)


def error_status(exc: JexidaError) -> int:
    """Unknown node or job (the core raises LookupErrors for those): 404; any other user error: 400."""
    return 404 if isinstance(exc, LookupError) else 400


def login_page(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={target}" if target != "/" else "/login", status_code=303)


def wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def page(web: Web) -> Callable[[Handler], Handler]:
    """A page that needs a login: the login page otherwise; user errors become an error page."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def checked(request: Request) -> Response:
            if web.session(request) is None:
                if wants_json(request) or request.headers.get("accept") == "text/event-stream":
                    return JSONResponse({"error": "not logged in: open /login"}, status_code=401)
                return login_page(request)
            try:
                return await handler(request)
            except JexidaError as exc:
                return web.error(request, error_status(exc), str(exc))

        return checked

    return wrap


def action(web: Web) -> Callable[[Handler], Handler]:
    """A form that changes something: a login and the session's CSRF token, or 403 (nothing is done)."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def checked(request: Request) -> Response:
            session = web.session(request)
            if session is None:
                if wants_json(request):
                    return JSONResponse({"error": "not logged in: open /login"}, status_code=401)
                return login_page(request)
            form = await request.form()
            given = form.get("csrf") or request.headers.get("x-csrf-token")
            if not web.sessions.csrf_ok(session, str(given) if given is not None else None):
                message = ("refused: this form did not carry this session's CSRF token (a stale page, or a request "
                           "from another site). Reload the page and try again.")
                if wants_json(request):
                    return JSONResponse({"error": message}, status_code=403)
                return web.error(request, 403, message)
            return await handler(request)

        return checked

    return wrap
