"""jexida-cluster: run a fleet of worker machines from an AI agent, on Ansible."""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path

# Ansible reads its configuration once, when it is first imported, and any module of the
# bridge may import it: the suite's settings (mcp_bridge/ansible.cfg) unless the person
# points ANSIBLE_CONFIG at a file of their own.
os.environ.setdefault("ANSIBLE_CONFIG", str(Path(__file__).resolve().parent / "ansible.cfg"))

# The bridge imports the collection's shared code (ansible_collections.jexida.cluster.*):
# Ansible's collection loader must own that namespace before the first such import, or
# the collection's metadata (meta/runtime.yml) is never loaded and its plugins fail to load.
from ansible.plugins.loader import init_plugin_loader

init_plugin_loader()


def _version() -> str:
    try:
        return metadata.version("jexida-cluster")
    except metadata.PackageNotFoundError:  # imported from a source tree that was never installed
        return "0+unknown"


__version__ = _version()
