"""The user-error root, shared with the collection (whose plugins and modules raise it too)."""

from __future__ import annotations

from ansible_collections.jexida.cluster.plugins.module_utils.errors import JexidaError

__all__ = ["BridgeError", "JexidaError"]


class BridgeError(JexidaError):
    """Bad input from the caller: the message says what was wrong and what to do."""
