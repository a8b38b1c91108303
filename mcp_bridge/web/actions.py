"""The dashboard's buttons: Check a node, Cancel a job. Each runs the MCP tool of the same name
(check_worker_node, cancel_job) through the same path as the HTTP API, audited with face web.

Without JavaScript a button is a form that posts and redirects back (the result waits in the
session); with it, app.js posts the same form asking for JSON and shows the result in place.
"""

from __future__ import annotations

from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from mcp_bridge.jobs.models import now_utc
from mcp_bridge.web.context import FACE_PAGES, Web, action, wants_json
from mcp_bridge.web.session import safe_next
from mcp_bridge.web.tools import call_tool


def routes(web: Web) -> list[Route]:
    @action(web)
    async def check(request: Request) -> Response:
        name = request.path_params["name"]
        outcome = await call_tool(web.server, "check_worker_node", {"name": name, "detailed": True}, FACE_PAGES)
        session = web.session(request)
        assert session is not None  # action() let the request in
        if outcome.ok:
            session.checks[name] = {**outcome.body, "checked_at": now_utc()}
        if wants_json(request):
            body = session.checks[name] if outcome.ok else outcome.body
            return JSONResponse(body, status_code=outcome.status)
        if not outcome.ok:
            session.notes.append(f"Check {name}: {outcome.error}")
        form = await request.form()
        back = safe_next(str(form.get("next") or "/"))
        return RedirectResponse(f"{back}#node-{quote(name)}", status_code=303)

    @action(web)
    async def cancel(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        outcome = await call_tool(web.server, "cancel_job", {"job_id": job_id}, FACE_PAGES)
        if wants_json(request):
            return JSONResponse(outcome.body, status_code=outcome.status)
        session = web.session(request)
        assert session is not None
        session.notes.append(f"Cancel: {outcome.body.get('message', '')}" if outcome.ok else
                             f"Cancel failed: {outcome.error}")
        return RedirectResponse(f"/jobs/{quote(job_id)}", status_code=303)

    return [
        Route("/nodes/{name}/check", check, methods=["POST"]),
        Route("/jobs/{job_id}/cancel", cancel, methods=["POST"]),
    ]
