# Copyright (c) jexida-cluster team
# Apache License 2.0 (see the collection's galaxy.yml)
"""Where jexida keeps a person's files, for every face: the bridge, the CLI and the playbooks.

- The configuration (``$XDG_CONFIG_HOME/jexida``, default ``~/.config/jexida``): the inventory
  config ``cluster.jexida.yml``, the node registry ``nodes.yml`` and the command policy
  ``policy.yml``. A person edits these.
- The state (``$JEXIDA_HOME``, else ``$XDG_STATE_HOME/jexida``, default ``~/.local/state/jexida``):
  the controller key, ``known_hosts``, the audit log and its key, jobs, runner folders, labs.

``JEXIDA_CONFIG_DIR`` and ``JEXIDA_HOME`` move either folder as a whole (tests do).
The playbooks read the same answers through the ``jexida.cluster.paths`` lookup.
"""

from __future__ import annotations

import os
from pathlib import Path

INVENTORY_CONFIG = "cluster.jexida.yml"
REGISTRY = "nodes.yml"
POLICY = "policy.yml"
CONTROLLER_KEY = "controller_ed25519"
KNOWN_HOSTS = "known_hosts"


def _xdg(variable: str, fallback: str) -> Path:
    # The XDG spec: an unset or empty variable, or a relative path, means the default.
    value = os.environ.get(variable, "")
    if value and os.path.isabs(os.path.expanduser(value)):
        return Path(os.path.expanduser(value))
    return Path.home() / fallback


def config_dir() -> Path:
    """The person's jexida configuration folder."""
    configured = os.environ.get("JEXIDA_CONFIG_DIR")
    if configured:
        return Path(configured).expanduser().absolute()
    return _xdg("XDG_CONFIG_HOME", ".config") / "jexida"


def state_dir() -> Path:
    """The state folder: keys, known_hosts, audit, jobs, runner folders, labs."""
    configured = os.environ.get("JEXIDA_HOME")
    if configured:
        return Path(configured).expanduser().absolute()
    return _xdg("XDG_STATE_HOME", ".local/state") / "jexida"


def default_paths() -> dict[str, Path]:
    """Every well-known file by name (what the lookup plugin answers)."""
    config, state = config_dir(), state_dir()
    return {
        "config": config,
        "state": state,
        "inventory": config / INVENTORY_CONFIG,
        "registry": config / REGISTRY,
        "policy": config / POLICY,
        "controller_key": state / CONTROLLER_KEY,
        "known_hosts": state / KNOWN_HOSTS,
    }
