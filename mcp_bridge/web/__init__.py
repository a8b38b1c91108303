"""The web dashboard and the HTTP API: faces over the same core, served by `jexida serve --http`.

Placeholder until the dashboard lands: no routes, no pages.
"""

from __future__ import annotations

from typing import Any


def routes(cluster: Any, server: Any, token: str) -> list[Any]:
    return []


def is_page(path: str) -> bool:
    """Paths that take the session cookie (or are public, like /login) instead of a bearer token."""
    return False
