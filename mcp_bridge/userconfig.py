"""`jexida init`: a person's configuration and state, made once and never overwritten.

The configuration folder gets the inventory config (``cluster.jexida.yml``) and the node
registry (``nodes.yml``, with the controller itself as the first node, on a local
connection); the state folder gets the controller key pair and an empty ``known_hosts``.
A file that exists is kept as it is, whatever it holds: running init again changes nothing.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ansible_collections.jexida.cluster.plugins.module_utils import registry
from ansible_collections.jexida.cluster.plugins.module_utils.controller_key import ensure_key_pair

from mcp_bridge.paths import default_paths

INVENTORY_CONFIG_TEXT = """\
# The jexida inventory: the nodes of the registry next to this file, probed for live load.
# Used by `jexida`, `jexida serve` and plain Ansible:
#   ansible-inventory -i {path} --graph
# Options: ansible-doc -t inventory jexida.cluster.jexida
plugin: jexida.cluster.jexida
nodes_file: {registry}
"""

CONTROLLER_NODE = {
    "name": "controller",
    "host": "localhost",
    "tags": ["controller"],
    # The controller itself runs commands without SSH, with the Python that runs jexida.
    "vars": {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"},
}


@dataclass
class InitReport:
    created: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)
    paths: dict[str, Path] = field(default_factory=dict)

    def next_steps(self) -> str:
        jexida = shutil.which("jexida") or str(Path(sys.argv[0]).absolute())
        inventory = self.paths["inventory"]
        return f"""Next steps:
  1. Add a worker (a fresh server you can reach as root or a sudo user):
       jexida nodes add NAME HOST --user root && jexida provision NAME --apply
     or, with an Ansible inventory of new servers:
       ansible-playbook -i HOSTS jexida.cluster.bootstrap
  2. See the cluster:
       jexida status
  3. Connect Claude Code:
       claude mcp add jexida -- {jexida} serve
     (any other MCP client: command "{jexida}", args ["serve"]; the inventory is {inventory})"""


def _write_new(path: Path, text: str, report: InitReport, mode: int = 0o644) -> None:
    """Create ``path`` with ``text`` unless it exists (O_EXCL: never overwrites, even in a race)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        report.kept.append(path)
        return
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    report.created.append(path)


def init_config() -> InitReport:
    """Make what is missing of the person's configuration and state; report what was made and kept."""
    paths = default_paths()
    report = InitReport(paths=paths)
    paths["config"].mkdir(parents=True, exist_ok=True)
    paths["state"].mkdir(parents=True, exist_ok=True, mode=0o700)

    registry_path = paths["registry"]
    registry_text = registry.dump_registry([registry.normalize_node(CONTROLLER_NODE, "the controller node")])
    _write_new(registry_path, registry_text, report)
    relative = os.path.relpath(registry_path, paths["inventory"].parent)
    _write_new(paths["inventory"], INVENTORY_CONFIG_TEXT.format(path=paths["inventory"], registry=relative), report)

    key = paths["controller_key"]
    if ensure_key_pair(str(key)):
        report.created.append(key)
    else:
        report.kept.append(key)
    _write_new(paths["known_hosts"], "", report, mode=0o600)
    return report
