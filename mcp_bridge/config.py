"""Which files one bridge uses: the inventory config, the policy, the state folder, the settings.

Nothing here reads those files: a missing or broken one is reported by the call that needs
it (with what to do), so `jexida serve` still starts and every tool can say what is wrong.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from mcp_bridge.errors import JexidaError
from mcp_bridge.paths import default_paths, state_dir
from mcp_bridge.settings import Settings

INVENTORY_SUFFIXES = (".jexida.yml", ".jexida.yaml")


def resolve_inventory(given: str | None) -> Path:
    """--inventory, else $JEXIDA_INVENTORY, else the config `jexida init` made; a folder means its config."""
    source = Path(given or os.environ.get("JEXIDA_INVENTORY") or default_paths()["inventory"]).expanduser()
    if source.is_dir():
        configs = sorted(p for p in source.iterdir() if p.name.endswith(INVENTORY_SUFFIXES))
        if not configs:
            raise JexidaError(f"no *.jexida.yml inventory config in {source}: pass the config file itself")
        source = configs[0]
    return source.absolute()


def resolve_policy() -> Path | None:
    """$JEXIDA_POLICY (it must exist), else the config folder's policy.yml when there is one."""
    configured = os.environ.get("JEXIDA_POLICY")
    if configured:
        return Path(configured).expanduser().absolute()
    default = default_paths()["policy"]
    return default if default.exists() else None


@dataclass
class BridgeConfig:
    inventory: str
    home: Path
    policy_file: Path | None
    settings: Settings = field(default_factory=Settings)
    face: str = "cli"
    caller: str | None = None

    @classmethod
    def from_env(cls, inventory: str | None = None, face: str = "cli") -> BridgeConfig:
        return cls(
            inventory=str(resolve_inventory(inventory)),
            home=state_dir(),
            policy_file=resolve_policy(),
            settings=Settings.from_env(),
            face=face,
        )
