# Copyright (c) jexida-cluster team
# Apache License 2.0 (see the collection's galaxy.yml)
"""What the controller must know about how the role set a worker up: its job and log folders.

The role's ``defaults/main.yml`` is the one home of those defaults. A node provisioned
with other folders carries them as host variables of the same names
(``jexida_worker_job_dir``, ``jexida_worker_log_dir``: the bootstrap playbook writes them
into the node's registry entry), so the inventory probe, commands and jobs all look in
the folders the role made.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

ROLE_DEFAULTS = Path(__file__).resolve().parents[2] / "roles" / "jexida_worker" / "defaults" / "main.yml"


@lru_cache(maxsize=1)
def role_defaults() -> dict[str, Any]:
    """The role's documented defaults (plain values; templated ones stay as text)."""
    with open(ROLE_DEFAULTS, encoding="utf-8") as handle:
        return dict(yaml.safe_load(handle) or {})


def default_job_dir() -> str:
    return str(role_defaults()["jexida_worker_job_dir"])


def default_log_dir() -> str:
    return str(role_defaults()["jexida_worker_log_dir"])


def node_dirs(host_vars: Mapping[str, Any]) -> tuple[str, str]:
    """(job dir, log dir) on a node, from its host variables or the role's defaults."""
    job_dir = host_vars.get("jexida_worker_job_dir") or default_job_dir()
    log_dir = host_vars.get("jexida_worker_log_dir") or default_log_dir()
    return str(job_dir), str(log_dir)
