"""Dashboard logins: sessions behind an HttpOnly, SameSite=Strict cookie, and their CSRF tokens.

The cookie holds a random session id, never the token: a stolen cookie dies with its session
(logout, expiry, a restart of the server) while the token stays secret. Sessions live in
memory only, so restarting `jexida serve` logs everyone out, which is what a person expects
after changing JEXIDA_TOKEN.

Forms that change something (Check, Cancel, logout) carry the session's CSRF token; SameSite=Strict
already keeps the cookie off cross-site requests, and the token covers browsers or set-ups where
that is not enough (a page on another port of the same host is same-site).
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mcp_bridge import settings

COOKIE = "jexida_session"


@dataclass
class Session:
    id: str
    csrf: str
    created: float
    # The last Check result per node, shown on the pages until the next one (no JavaScript needed).
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    # One-shot messages for the next page (post, redirect, then get).
    notes: list[str] = field(default_factory=list)


def cookie_name(port: int | None) -> str:
    """Cookies are per host, not per port: two bridges on one host must not overwrite each other's login."""
    return f"{COOKIE}_{port}" if port else COOKIE


class Sessions:
    """The logged-in browsers of one server (all access happens on its event loop)."""

    def __init__(self, token: str, max_age_s: float = settings.SESSION_MAX_AGE_S,
                 max_sessions: int = settings.MAX_SESSIONS, clock: Callable[[], float] = time.monotonic) -> None:
        self._token = token
        self.max_age_s = max_age_s
        self.max_sessions = max_sessions
        self._clock = clock
        self._by_id: dict[str, Session] = {}

    def token_matches(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self._token.encode())

    def login(self, given: str | None) -> Session | None:
        """A new session for the right token, else None."""
        if not self.token_matches((given or "").strip()):
            return None
        self._expire()
        while len(self._by_id) >= self.max_sessions:  # dicts keep insertion order: the oldest goes
            del self._by_id[next(iter(self._by_id))]
        session = Session(id=secrets.token_urlsafe(32), csrf=secrets.token_urlsafe(32), created=self._clock())
        self._by_id[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        session = self._by_id.get(session_id)
        if session is None:
            return None
        if self._clock() - session.created > self.max_age_s:
            del self._by_id[session_id]
            return None
        return session

    def logout(self, session_id: str | None) -> None:
        self._by_id.pop(session_id or "", None)

    @staticmethod
    def csrf_ok(session: Session, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(str(given).encode(), session.csrf.encode())

    def _expire(self) -> None:
        now = self._clock()
        for session_id in [s.id for s in self._by_id.values() if now - s.created > self.max_age_s]:
            del self._by_id[session_id]

    def __len__(self) -> int:
        return len(self._by_id)


def safe_next(target: str | None, default: str = "/") -> str:
    """Where to go after a login or a form: only a path on this server (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target
