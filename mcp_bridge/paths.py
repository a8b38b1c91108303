"""Where the suite keeps its files: the checkout it runs from and its state folder."""

from __future__ import annotations

import os
from pathlib import Path

# The package lives at the root of the checkout (it is also an Ansible collection),
# so the playbooks, the inventory and the lab files sit beside it.
REPO_ROOT = Path(__file__).resolve().parent.parent


def jexida_home() -> Path:
    """The suite's state folder: keys, known_hosts, labs, runner artifacts, jobs."""
    configured = os.environ.get("JEXIDA_HOME")
    if configured:
        return Path(configured).expanduser().resolve()
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home).expanduser().resolve() / "jexida"


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (mode 0700) if needed: it holds private keys."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path
