"""The HTTP face: one Starlette app on one port, always behind a token, with Host/Origin checks.

- The token is ``JEXIDA_TOKEN``, else one made on first start and kept (0600) in the state
  folder: loopback is no exception, since any local user or container can reach a loopback port.
- Requests must name an allowed host (DNS rebinding protection, for every route, not only the
  MCP endpoint): on loopback the bound address, localhost and 127.0.0.1; on any other address
  only the names given with ``--allowed-host``.
- ``Authorization: Bearer <token>`` (the scheme in any case) for the MCP endpoint ``/mcp`` and
  the API; the web pages (mcp_bridge.web) also take the session cookie their login page sets.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import secrets
from collections.abc import Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount

from mcp_bridge.errors import JexidaError

TOKEN_FILE = "http_token"
Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def http_token(state: Path) -> tuple[str, bool]:
    """(the token, whether it was made now): JEXIDA_TOKEN, else the state folder's, made on first start."""
    given = os.environ.get("JEXIDA_TOKEN")
    if given:
        return given, False
    path = state / TOKEN_FILE
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        token = path.read_text().strip()
        if not token:
            raise JexidaError(f"{path} is empty: delete it to get a new token, or set JEXIDA_TOKEN") from None
        return token, False
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token, True


def allowed_names(host: str, extra: Iterable[str]) -> set[str]:
    """The host names clients may use to reach this server."""
    names = {name.strip().lower() for name in extra if name.strip()}
    if is_loopback(host):
        names |= {host.lower(), "localhost", "127.0.0.1", "[::1]"}
    elif host not in ("0.0.0.0", "::"):  # a specific address is a name clients may use
        names.add(host.lower())
    if not names:
        raise JexidaError(f"serving on {host} needs the names clients use to reach this server: pass "
                          "--allowed-host NAME (repeatable), e.g. --allowed-host build-server.example")
    return names


def bearer_token(headers: dict[bytes, bytes]) -> str | None:
    scheme, _, value = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def token_matches(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


async def _reply(send: Any, status: int, body: dict[str, Any], extra: list[tuple[bytes, bytes]] = ()) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), *extra]})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


class Guard:
    """Host/Origin checks for every route, then the token (or, for pages, what ``pages_auth`` accepts)."""

    def __init__(self, app: ASGIApp, token: str, names: set[str], port: int,
                 page_paths: Callable[[str], bool] = lambda path: False) -> None:
        self.app, self.token, self.names, self.port, self.page_paths = app, token, names, port, page_paths

    def _host_ok(self, host: str) -> bool:
        host = host.lower()
        return host in self.names or any(host == f"{name}:{self.port}" for name in self.names)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        host = headers.get(b"host", b"").decode("latin-1")
        if not self._host_ok(host):
            await _reply(send, 421, {"error": f"host {host!r} is not one this server answers to: start it with "
                                              "--allowed-host for each name clients use"})
            return
        origin = headers.get(b"origin", b"").decode("latin-1")
        if origin and not self._host_ok(urlsplit(origin).netloc):
            await _reply(send, 403, {"error": f"origin {origin!r} is not allowed"})
            return
        path = scope.get("path", "")
        if self.page_paths(path) or token_matches(bearer_token(headers), self.token):
            await self.app(scope, receive, send)
            return
        await _reply(send, 401, {"error": "missing or wrong token: send Authorization: Bearer <token> (the token "
                                          "is JEXIDA_TOKEN, or the one `jexida serve --http` printed)"},
                     [(b"www-authenticate", b"Bearer")])


def http_app(server: MCPServer, token: str, host: str, port: int, names: set[str],
             routes: list[BaseRoute] | None = None, page_paths: Callable[[str], bool] = lambda path: False) -> Guard:
    """The MCP endpoint at /mcp plus the given routes (API, pages), all behind one Guard."""
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=sorted(names | {f"{name}:{port}" for name in names}),
        allowed_origins=sorted({f"{scheme}://{name}" for name in names for scheme in ("http", "https")}
                               | {f"{scheme}://{name}:{port}" for name in names for scheme in ("http", "https")}),
    )
    mcp_app = server.streamable_http_app(transport_security=security, host=host)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        async with server.session_manager.run():  # Mount does not run the MCP app's own lifespan
            yield

    app = Starlette(routes=[*(routes or []), Mount("/", app=mcp_app)], lifespan=lifespan)
    return Guard(app, token, names, port, page_paths)
