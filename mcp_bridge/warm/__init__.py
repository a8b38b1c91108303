"""A warm Ansible for the bridge's ad-hoc calls: imported once, forked per call (see forkserver.py).

- forkserver.py: the server (its own process), the per-call supervisor and the call's Ansible.
- client.py: the thin `ansible` that ansible-runner starts as its ``binary``.
- manager.py: the bridge's side (start, route calls, fall back to cold, restart, stop).
"""

from __future__ import annotations

from mcp_bridge.warm.manager import WarmAnsible, shared

__all__ = ["WarmAnsible", "shared"]
