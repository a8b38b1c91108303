"""The login page (the token in, a session cookie out) and logout."""

from __future__ import annotations

import anyio
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from mcp_bridge import settings
from mcp_bridge.web.context import Web, action
from mcp_bridge.web.session import cookie_name, safe_next


def routes(web: Web) -> list[Route]:
    async def show(request: Request) -> Response:
        target = safe_next(request.query_params.get("next"))
        if web.session(request) is not None:
            return RedirectResponse(target, status_code=303)
        return web.page(request, "login.html", target=target, problem="")

    async def submit(request: Request) -> Response:
        form = await request.form()
        target = safe_next(str(form.get("next") or "/"))
        session = web.sessions.login(str(form.get("token") or ""))
        if session is None:
            await anyio.sleep(settings.LOGIN_FAILURE_DELAY_S)  # one guess per second and connection
            return web.page(request, "login.html", status=401, target=target,
                            problem="Wrong token. It is JEXIDA_TOKEN, or the one in the state folder's http_token "
                                    "file that `jexida serve --http` made.")
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(cookie_name(request.url.port), session.id, max_age=int(web.sessions.max_age_s),
                            path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https")
        return response

    @action(web)
    async def logout(request: Request) -> Response:
        name = cookie_name(request.url.port)
        web.sessions.logout(request.cookies.get(name))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(name, path="/", httponly=True, samesite="strict")
        return response

    return [
        Route("/login", show, methods=["GET"]),
        Route("/login", submit, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
    ]
