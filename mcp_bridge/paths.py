"""Where the product's own files are (package data, the collection) and the person's (config, state)."""

from __future__ import annotations

from pathlib import Path

from ansible_collections.jexida.cluster.plugins.plugin_utils import paths as _collection_paths
from ansible_collections.jexida.cluster.plugins.plugin_utils.paths import config_dir, default_paths, state_dir

PACKAGE_DIR = Path(__file__).resolve().parent
# The suite's Ansible settings (pipelining, ControlPersist, no fact gathering).
ANSIBLE_CFG = PACKAGE_DIR / "ansible.cfg"
# The installed collection jexida.cluster (the checkout itself, in a development venv).
COLLECTION_ROOT = Path(_collection_paths.__file__).resolve().parents[2]
BOOTSTRAP_PLAYBOOK = COLLECTION_ROOT / "playbooks" / "bootstrap.yml"


def jexida_home() -> Path:
    """The state folder (kept under this name: JEXIDA_HOME is what people set)."""
    return state_dir()


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (mode 0700) if needed: it holds private keys."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


__all__ = ["ANSIBLE_CFG", "BOOTSTRAP_PLAYBOOK", "COLLECTION_ROOT", "PACKAGE_DIR", "config_dir", "default_paths",
           "ensure_private_dir", "jexida_home", "state_dir"]
